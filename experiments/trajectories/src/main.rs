//! Runs the `trajectories` experiment alone: `cargo run --release -p trajectories -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&trajectories::Trajectories)
}
