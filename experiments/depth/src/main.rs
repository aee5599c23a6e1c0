//! Runs the `depth` experiment alone: `cargo run --release -p depth -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&depth::Depth)
}
