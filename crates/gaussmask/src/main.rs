//! `gaussmask list`, `gaussmask run <id> [options]`: see `gaussmask --help`.

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> std::process::ExitCode {
    gaussmask::main()
}
