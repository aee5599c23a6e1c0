//! Runs the `two-rates` experiment alone: `cargo run --release -p two-rates -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&two_rates::TwoRates)
}
