//! Run-time backend and float-type selection.

use std::fmt;

use burn::tensor::{Device, FloatDType, Tensor};
use clap::ValueEnum;

use crate::error::HarnessError;

/// Compute backend, chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Backend {
    /// Pure-Rust CPU backend (default).
    #[default]
    Flex,
    /// The ndarray CPU backend.
    Ndarray,
    /// GPUs through wgpu (Vulkan).
    Wgpu,
}

/// Float type of every tensor of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Dtype {
    /// 32-bit floats (default).
    #[default]
    F32,
    /// 64-bit floats, for verification on CPU backends.
    F64,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        })
    }
}

impl Backend {
    /// Backends compiled into this binary.
    pub fn compiled() -> Vec<Backend> {
        let mut out = Vec::new();
        if cfg!(feature = "flex") {
            out.push(Backend::Flex);
        }
        if cfg!(feature = "ndarray") {
            out.push(Backend::Ndarray);
        }
        if cfg!(feature = "wgpu") {
            out.push(Backend::Wgpu);
        }
        out
    }

    /// Whether the backend runs on a GPU.
    pub fn is_gpu(self) -> bool {
        self == Backend::Wgpu
    }

    /// How many replicas to train in one batched computation when the config leaves it open
    /// (`None`: all of them). Measured on the trajectories workload (21 replicas, n = 500,
    /// d = 20, m = 100, 2 cores): flex runs a loop of single replicas 2.1× faster than one
    /// batch (18.5 s vs 38.7 s; its 3-D matmul is slower than a loop of 2-D ones), ndarray one
    /// batch 1.08× faster than a loop (36.5 s vs 39.3 s), and GPUs want the largest batch.
    pub fn default_replica_chunk(self) -> Option<usize> {
        match self {
            Backend::Flex => Some(1),
            Backend::Ndarray | Backend::Wgpu => None,
        }
    }

    /// The plain (non-autodiff) device, or a one-line error naming what is missing.
    pub fn device(self) -> Result<Device, HarnessError> {
        let missing = || {
            HarnessError::input(format!(
                "backend '{self}' is not compiled into this binary: rebuild with \
                 `--features {self}` (compiled: {})",
                Backend::compiled()
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept on purpose: users ask for ndarray
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => wgpu_device(),
            #[allow(unreachable_patterns)]
            _ => Err(missing()),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, HarnessError> {
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    // wgpu opens its adapter lazily and panics when there is none: probe once, quietly.
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(move || {
        Tensor::<1>::from_floats([1.0f32], &probe).into_data();
    });
    std::panic::set_hook(hook);
    opened.map(|_| device).map_err(|_| {
        HarnessError::input(
            "backend 'wgpu' found no GPU adapter: install a Vulkan driver \
             (`apt-get install -y libvulkan1 mesa-vulkan-drivers` gives a software one) \
             or pick `--backend flex`",
        )
    })
}

/// The device for `backend` with `dtype` as its default float type.
pub fn make_device(backend: Backend, dtype: Dtype) -> Result<Device, HarnessError> {
    let float = match dtype {
        Dtype::F32 => FloatDType::F32,
        Dtype::F64 if backend == Backend::Wgpu => {
            return Err(HarnessError::input(
                "--dtype f64 is available on the CPU backends (flex, ndarray), not on wgpu",
            ));
        }
        Dtype::F64 => FloatDType::F64,
    };
    let mut device = backend.device()?;
    // A device's settings can be set once per process; a second identical request is fine.
    if device.configure(float).is_err() && device.settings().float_dtype != float {
        return Err(HarnessError::input(format!(
            "backend '{backend}' was already configured with another float type in this process"
        )));
    }
    // Touch the device so a broken backend fails here, with the message above, not mid-run.
    let _ = Tensor::<1>::zeros([1], &device);
    Ok(device)
}
