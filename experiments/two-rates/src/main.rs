//! Runs the `two-rates` experiment alone: `cargo run --release -p two-rates -- [options]`.

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&two_rates::TwoRates)
}
