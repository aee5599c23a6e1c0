//! Runs the `correlated-masks` experiment alone: `cargo run --release -p correlated-masks -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&correlated_masks::CorrelatedMasks)
}
