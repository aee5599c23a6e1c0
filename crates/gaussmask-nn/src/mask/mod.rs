//! Multiplicative input masks: x ↦ x ⊙ c with E c = 1.
//!
//! The Gaussian mask c ~ N(1, κ²) is the paper's; the other families share the interface, so a
//! model takes another one by swapping its `InputMask`. Every model config exposes that as the
//! `[model.mask]` section (`TwoLayerReluConfig::mask`, `ImageModelConfig::mask`); the default is
//! the Gaussian mask.

use burn::module::{Flag, Module, Param};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use gaussmask_core::InputError;

use crate::rng::Stream;
use crate::tensor_io::from_f64;

mod call;
mod config;
mod streams;

pub use call::{MASK_BLOCK_ROWS, MaskCall};
pub use config::{MaskConfig, MaskFamily, MaskNoise, MaskResample, Replica};
pub use streams::MaskState;
use streams::MaskStreams;

/// The masking layer x ↦ x ⊙ c: a fresh mask c in training mode, the identity after
/// [`Module::valid`] or at κ = 0. Put it in front of any model; build it with
/// [`MaskConfig::init`] (one κ) or [`MaskConfig::init_replicas`] (one κ per replica along
/// axis 0).
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Tensor};
/// use gaussmask_nn::MaskConfig;
///
/// let device = Device::flex();
/// let mask = MaskConfig::default().init(0.5, 7); // c ~ N(1, 0.5²), seed 7
/// let x = Tensor::<2>::ones([4, 3], &device);
/// let masked = mask.forward(x.clone()); // x ⊙ c, a new c every call
/// assert!(!masked.equal(x.clone()).all().into_scalar::<bool>());
/// let clean = mask.valid().forward(x.clone()); // evaluation: the identity
/// assert!(clean.equal(x).all().into_scalar::<bool>());
/// ```
#[derive(Module, Debug)]
pub struct InputMask {
    /// Mask family, resampling rule and noise source.
    #[module(skip)]
    pub config: MaskConfig,
    /// κ of each replica (one value without a replica axis).
    #[module(skip)]
    pub kappa: Vec<f64>,
    /// Whether inputs carry the replica axis first.
    #[module(skip)]
    replica_axis: bool,
    /// The host streams (used by the `stream` source), recorded with the weights.
    streams: MaskStreams,
    /// Training mode flag: `valid()` turns the mask into the identity.
    pub training: Param<Flag>,
}

impl InputMask {
    /// Whether the mask currently acts (training mode and some κ > 0).
    pub fn is_active(&self) -> bool {
        self.training.is_enabled() && self.kappa.iter().any(|&k| k > 0.0)
    }

    /// Number of replicas (1 without a replica axis).
    pub fn replicas(&self) -> usize {
        self.kappa.len()
    }

    /// The host streams' state, for checkpoints: restoring it with
    /// [`InputMask::load_noise_state`] makes the following masks identical to those of an
    /// uninterrupted run. (The `device` source's state is the backend's generator.)
    pub fn noise_state(&self) -> MaskState {
        self.streams.lock().clone()
    }

    /// Restores a state saved by [`InputMask::noise_state`].
    pub fn load_noise_state(&self, state: MaskState) -> Result<(), InputError> {
        let r = self.replicas();
        if state.streams.len() != r || state.roots.len() != r {
            return Err(format!(
                "mask state holds {} streams and {} roots for {r} replicas",
                state.streams.len(),
                state.roots.len()
            )
            .into());
        }
        *self.streams.lock() = state;
        Ok(())
    }

    /// Starts one host mask call (one step): advances every replica's stream once, whatever the
    /// number of rows, and returns the source the rows' masks are drawn from.
    pub fn begin(&self) -> MaskCall {
        let active = self.training.is_enabled();
        let mut state = self.streams.lock();
        let calls = (0..self.replicas())
            .map(|r| {
                // κ = 0 is exactly the identity, and no draw is consumed.
                (active && self.kappa[r] > 0.0).then(|| {
                    let mut stream = Stream::from_state(state.streams[r]);
                    let key = stream.next_u64();
                    state.streams[r] = stream.state();
                    stream.substream(key)
                })
            })
            .collect();
        MaskCall {
            config: self.config.clone(),
            kappa: self.kappa.clone(),
            calls,
            roots: state.roots.iter().map(|&s| Stream::from_state(s)).collect(),
        }
    }

    /// Draws one call's masks on the host for the samples `rows` (dataset indices) of every
    /// replica, whatever the configured source.
    ///
    /// # Shapes
    /// Returns `R × rows.len() × d` values, replica-major then row-major.
    pub fn sample(&self, rows: &[usize], d: usize) -> Vec<f64> {
        self.begin().fill(rows, d)
    }

    /// Applies the mask, the samples being the batch positions 0..n (right for full-batch
    /// training; a minibatch with fixed-per-sample masks needs [`InputMask::forward_indexed`]).
    ///
    /// # Shapes
    /// - without a replica axis: `x` is `[n, ..]` (rank 1: one sample); returns the same shape
    /// - with R replicas: `x` is `[R, n, ..]` or `[1, n, ..]`; returns `[R, n, ..]` while
    ///   active, `x` unchanged otherwise
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let n = self.layout(&x.dims()).1;
        self.forward_indexed(x, &(0..n).collect::<Vec<_>>())
    }

    /// Applies the mask to the samples whose dataset indices are `rows` (what fixed-per-sample
    /// masks are keyed by).
    ///
    /// # Shapes
    /// As [`InputMask::forward`]; `rows` holds n indices.
    pub fn forward_indexed<const D: usize>(&self, x: Tensor<D>, rows: &[usize]) -> Tensor<D> {
        self.apply_rows(x, |_| rows)
    }

    /// As [`InputMask::forward_indexed`], each replica on its own samples (replicas trained on
    /// different data): replica r's n dataset indices are `rows[r·n..(r + 1)·n]`. Replica r
    /// draws what a one-replica mask of its seed draws for those rows.
    ///
    /// # Shapes
    /// - `x`: `[R, n, ..]`; `rows`: R·n indices; returns `[R, n, ..]`
    ///
    /// # Panics
    /// Without a replica axis, or when `x`'s axis 0 or `rows` do not hold R replicas.
    pub fn forward_replica_rows<const D: usize>(&self, x: Tensor<D>, rows: &[usize]) -> Tensor<D> {
        let (r, n) = (self.replicas(), self.layout(&x.dims()).1);
        assert!(
            self.replica_axis && x.dims()[0] == r && rows.len() == r * n,
            "mask of {r} replicas: own rows need inputs [{r}, n, ..] and {r}·n row indices"
        );
        self.apply_rows(x, |i| &rows[i * n..(i + 1) * n])
    }

    /// x ⊙ c, replica r's masks drawn for its n samples `rows(r)` (checked while active).
    fn apply_rows<'r, const D: usize>(
        &self,
        x: Tensor<D>,
        rows: impl Fn(usize) -> &'r [usize],
    ) -> Tensor<D> {
        // Even when inactive: the recorded stream state is then built on the model's device,
        // never on the default one (which would start a GPU context in a CPU run).
        self.streams.set_device(&x.device());
        if !self.is_active() {
            return x;
        }
        let (shape, n, d) = self.layout(&x.dims());
        let device = x.device();
        let c = match self.config.noise {
            MaskNoise::Stream => {
                let values = self.begin().fill_each(rows, n, d);
                Tensor::<D>::from_data(TensorData::new(values, shape), (&device, x.dtype()))
            }
            MaskNoise::Device => self.device_mask(shape, &device, x.dtype()),
        };
        x * c
    }

    /// Applies a mask already drawn (e.g. by [`InputMask::sample`]): for tests and probes.
    ///
    /// # Shapes
    /// - `x`: `[R, n, d]` or `[1, n, d]`; `c`: `R·n·d` values
    pub fn apply(x: Tensor<3>, c: Vec<f64>, replicas: usize, device: &Device) -> Tensor<3> {
        let [_, n, d] = x.dims();
        x * from_f64(c, [replicas, n, d], device)
    }

    /// The mask's shape for an input of `dims`, the number of samples and the values per
    /// sample.
    fn layout<const D: usize>(&self, dims: &[usize; D]) -> ([usize; D], usize, usize) {
        let mut shape = *dims;
        if !self.replica_axis {
            return match D {
                1 => (shape, 1, dims[0]),
                _ => (shape, dims[0], dims[1..].iter().product()),
            };
        }
        let r = self.replicas();
        assert!(
            D >= 2,
            "a replicated mask needs inputs [R, n, ..], got rank {D}"
        );
        assert!(
            dims[0] == r || dims[0] == 1,
            "mask of {r} replicas: input axis 0 must be {r} or 1, got {}",
            dims[0]
        );
        shape[0] = r;
        (shape, dims[1], dims[2..].iter().product())
    }

    /// One call's masks drawn on the device.
    fn device_mask<const D: usize>(
        &self,
        mut shape: [usize; D],
        device: &Device,
        dtype: DType,
    ) -> Tensor<D> {
        let sample_axis = usize::from(self.replica_axis && D >= 2);
        if self.config.resample == MaskResample::SharedAcrossBatch && D >= 2 {
            shape[sample_axis] = 1;
        }
        let random = |dist| Tensor::<D>::random(shape, dist, (device, dtype));
        let standard = Distribution::Normal(0.0, 1.0);
        let config = &self.config;
        let per_replica = |f: &dyn Fn(f64) -> f64| self.per_replica::<D>(f, device, dtype);
        match config.family {
            MaskFamily::Gaussian => random(standard) * per_replica(&|k| k) + 1.0,
            MaskFamily::LogNormal => {
                (random(standard) * per_replica(&|k| k) - per_replica(&|k| 0.5 * k * k)).exp()
            }
            MaskFamily::TruncatedGaussian => {
                // Rejection, as on the host: redraw the values outside [−b, b] until none is.
                let b = config.truncation;
                let mut z = random(standard);
                loop {
                    let outside = z.clone().abs().greater_elem(b);
                    if !outside.clone().any().into_scalar::<bool>() {
                        break;
                    }
                    z = z.mask_where(outside, random(standard));
                }
                z * per_replica(&|k| k) + 1.0
            }
            MaskFamily::Bernoulli => {
                // κ = 0 keeps everything, as on the host path, whatever `keep_prob` says.
                let keep = |k: f64| match (k > 0.0, config.keep_prob) {
                    (false, _) => 1.0,
                    (true, Some(p)) => p,
                    (true, None) => 1.0 / (1.0 + k * k),
                };
                let kept = (per_replica(&keep) - random(Distribution::Default))
                    .greater_elem(0.0)
                    .float();
                kept * per_replica(&|k| 1.0 / keep(k))
            }
        }
    }

    /// `f(κ_r)` shaped to broadcast over axis 0 of a rank-D mask (a scalar tensor without a
    /// replica axis).
    fn per_replica<const D: usize>(
        &self,
        f: impl Fn(f64) -> f64,
        device: &Device,
        dtype: DType,
    ) -> Tensor<D> {
        let mut shape = [1; D];
        if self.replica_axis {
            shape[0] = self.replicas();
        }
        let values: Vec<f64> = self.kappa.iter().map(|&k| f(k)).collect();
        Tensor::from_data(TensorData::new(values, shape), (device, dtype))
    }
}
