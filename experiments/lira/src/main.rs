//! Runs the `lira` experiment alone: `cargo run --release -p lira -- [options]`.

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&lira::Lira)
}
