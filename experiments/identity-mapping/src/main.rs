//! Runs the `identity-mapping` experiment alone: `cargo run --release -p identity-mapping -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&identity_mapping::IdentityMapping)
}
