//! Runs the `smoothed-relu` experiment alone: `cargo run --release -p smoothed-relu -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&smoothed_relu::SmoothedRelu)
}
