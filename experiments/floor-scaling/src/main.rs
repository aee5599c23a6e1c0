//! Runs the `floor-scaling` experiment alone: `cargo run --release -p floor-scaling -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&floor_scaling::FloorScaling)
}
