//! Runs the `expected-objective` experiment alone: `cargo run --release -p expected-objective -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&expected_objective::ExpectedObjective)
}
