//! Runs the `membership-inference` experiment alone:
//! `cargo run --release -p membership-inference -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&membership_inference::MembershipInference)
}
