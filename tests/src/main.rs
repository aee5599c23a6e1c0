//! The `gaussmask` command line, built for the integration tests.

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> std::process::ExitCode {
    gaussmask::main()
}
