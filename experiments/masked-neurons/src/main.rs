//! Runs the `masked-neurons` experiment alone: `cargo run --release -p masked-neurons -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&masked_neurons::MaskedNeurons)
}
