//! Runs the `federated-fading` experiment alone:
//! `cargo run --release -p federated-fading -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&federated_fading::FederatedFading)
}
