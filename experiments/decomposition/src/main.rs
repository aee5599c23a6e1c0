//! Runs the `decomposition` experiment alone: `cargo run --release -p decomposition -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&decomposition::Decomposition)
}
