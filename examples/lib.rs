//! Helpers shared by the examples: the backend flag.

use burn::tensor::Device;
use gaussmask_harness::{Backend, Dtype, make_device};

/// The device named by `--backend flex|ndarray|wgpu` on the command line (flex by default), in
/// f32, or a one-line error.
pub fn device_from_args() -> Result<Device, String> {
    let args: Vec<String> = std::env::args().collect();
    let name = match args.iter().position(|a| a == "--backend") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--backend needs a value: flex, ndarray or wgpu")?
            .as_str(),
        None => "flex",
    };
    let backend = <Backend as clap::ValueEnum>::from_str(name, true)
        .map_err(|_| format!("--backend must be flex, ndarray or wgpu, got '{name}'"))?;
    make_device(backend, Dtype::F32).map_err(|e| e.to_string())
}

/// [`device_from_args`], or the error on one line and exit code 2.
pub fn device_or_exit() -> Device {
    device_from_args().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}
