//! Runs the `image-accuracy` experiment alone: `cargo run --release -p image-accuracy -- [options]`.

fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main_single(&image_accuracy::ImageAccuracy)
}
