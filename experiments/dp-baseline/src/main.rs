//! Runs the `dp-baseline` experiment alone: `cargo run --release -p dp-baseline -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&dp_baseline::DpBaseline)
}
