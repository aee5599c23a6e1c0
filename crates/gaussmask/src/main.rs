//! `gaussmask list`, `gaussmask run <id> [options]`: see `gaussmask --help`.

fn main() -> std::process::ExitCode {
    gaussmask::main()
}
