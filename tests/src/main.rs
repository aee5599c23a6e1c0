//! The `gaussmask` command line, built for the integration tests.

fn main() -> std::process::ExitCode {
    gaussmask::main()
}
