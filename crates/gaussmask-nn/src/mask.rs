//! Multiplicative input masks: x ↦ x ⊙ c with E c = 1.
//!
//! The Gaussian mask c ~ N(1, κ²) is the paper's; the other families share the interface, so a
//! model takes another one by swapping its `InputMask`. The two-layer experiments and `gaussmask
//! train` expose that as the `[model.mask]` config section; the image experiments' models
//! (`ImageModelConfig::init`) are built behind the Gaussian mask.

use std::sync::{Mutex, MutexGuard};

use burn::module::{
    Content, Devices, Flag, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper,
    ModuleVisitor, Param, ParamId,
};
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::{Stream, tag};
use crate::tensor_io::from_f64;

/// Distribution of one mask coordinate c (mean one for every family).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskFamily {
    /// c ~ N(1, κ²).
    #[default]
    Gaussian,
    /// c = exp(κZ − κ²/2), Z ~ N(0, 1): positive, mean one.
    LogNormal,
    /// c ~ N(1, κ²) conditioned on |c − 1| ≤ `truncation`·κ.
    TruncatedGaussian,
    /// Inverted dropout: c = 1/p with probability p, else 0.
    Bernoulli,
}

/// When a fresh mask is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskResample {
    /// Independent per sample, per coordinate and per call (the paper's setting).
    #[default]
    Fresh,
    /// Each sample's mask is drawn once and reused at every step ("correlated masks").
    FixedPerSample,
    /// One mask per call, shared by every sample of the batch.
    SharedAcrossBatch,
}

impl std::fmt::Display for MaskResample {
    /// The config spelling (padded to the formatter's width, for tables).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            MaskResample::Fresh => "fresh",
            MaskResample::FixedPerSample => "fixed-per-sample",
            MaskResample::SharedAcrossBatch => "shared-across-batch",
        })
    }
}

/// Where the mask's random numbers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskNoise {
    /// Seeded host streams, one per replica ([`Stream`]), uploaded every call: the same masks on
    /// every backend and float type, a replica's masks independent of its batch-mates, and every
    /// resampling mode. The paper experiments use it.
    #[default]
    Stream,
    /// Burn's on-device random tensors (seeded by `Device::seed`): nothing drawn on the host or
    /// uploaded, for GPUs and large inputs. Masks differ between backends; fixed-per-sample
    /// masks need `stream`.
    Device,
}

/// Configuration of an input mask (the `[model.mask]` section of a config). κ and the seed are
/// per replica and given at [`MaskConfig::init`] or [`MaskConfig::init_replicas`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Distribution of each coordinate.
    #[serde(default)]
    pub family: MaskFamily,
    /// How masks are shared across samples and steps.
    #[serde(default)]
    pub resample: MaskResample,
    /// Truncated Gaussian: half-width of the support in units of κ.
    #[serde(default = "default_truncation")]
    pub truncation: f64,
    /// Bernoulli: keep probability; by default 1/(1 + κ²), which gives Var c = κ².
    #[serde(default)]
    pub keep_prob: Option<f64>,
    /// Source of the random numbers.
    #[serde(default)]
    pub noise: MaskNoise,
}

fn default_truncation() -> f64 {
    2.0
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            family: MaskFamily::Gaussian,
            resample: MaskResample::Fresh,
            truncation: default_truncation(),
            keep_prob: None,
            noise: MaskNoise::Stream,
        }
    }
}

/// One replica of a sweep: its mask level and its seed (initial weights and mask stream).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replica {
    /// Mask standard deviation κ ≥ 0.
    pub kappa: f64,
    /// Seed of the replica's initial weights and of its mask stream.
    pub seed: u64,
}

impl MaskConfig {
    /// The same config with another family.
    pub fn with_family(self, family: MaskFamily) -> Self {
        Self { family, ..self }
    }

    /// The same config with another resampling rule.
    pub fn with_resample(self, resample: MaskResample) -> Self {
        Self { resample, ..self }
    }

    /// The same config with another noise source.
    pub fn with_noise(self, noise: MaskNoise) -> Self {
        Self { noise, ..self }
    }

    /// Checks every field; the error names the offending one by its full key, the section the
    /// config sits in being `at` (e.g. `model.mask`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if !(self.truncation.is_finite() && self.truncation >= 0.5) {
            return Err(format!(
                "{at}.truncation must be a finite number ≥ 0.5, got {}",
                self.truncation
            ));
        }
        if let Some(p) = self.keep_prob
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!("{at}.keep_prob must lie in (0, 1], got {p}"));
        }
        if self.noise == MaskNoise::Device && self.resample == MaskResample::FixedPerSample {
            return Err(format!(
                "{at}.noise = \"device\" cannot keep one mask per sample; use \"stream\" with \
                 {at}.resample = \"fixed-per-sample\""
            ));
        }
        Ok(())
    }

    /// A mask of noise level `kappa` for a model without a replica axis; `seed` keys its
    /// stream. In training mode, like [`burn::nn::Dropout`]: [`Module::valid`] makes it the
    /// identity.
    ///
    /// # Panics
    /// If the config is invalid (see [`MaskConfig::validate`]) or `kappa` fails
    /// [`check_kappa`](crate::kappa::check_kappa).
    pub fn init(&self, kappa: f64, seed: u64) -> InputMask {
        self.build(&[Replica { kappa, seed }], false)
    }

    /// A mask for models that hold R replicas along axis 0 (one κ and seed each); inputs are
    /// `[R, n, ..]`, or `[1, n, ..]` shared by every replica.
    ///
    /// # Panics
    /// As [`MaskConfig::init`], and if `replicas` is empty.
    pub fn init_replicas(&self, replicas: &[Replica]) -> InputMask {
        assert!(!replicas.is_empty(), "a mask needs at least one replica");
        self.build(replicas, true)
    }

    fn build(&self, replicas: &[Replica], replica_axis: bool) -> InputMask {
        if let Err(e) = self.validate("mask") {
            panic!("{e}");
        }
        for r in replicas {
            if let Err(e) = crate::kappa::check_kappa("mask κ", r.kappa) {
                panic!("{e}");
            }
        }
        let seeds: Vec<u64> = replicas.iter().map(|r| r.seed).collect();
        InputMask {
            config: self.clone(),
            kappa: replicas.iter().map(|r| r.kappa).collect(),
            replica_axis,
            streams: MaskStreams::new(&seeds),
            training: Param::from_bool(true),
        }
    }

    /// Draws one coordinate c for noise level `kappa` from `stream`.
    #[inline]
    pub fn draw(&self, kappa: f64, stream: &mut Stream) -> f64 {
        match self.family {
            MaskFamily::Gaussian => 1.0 + kappa * stream.normal_ziggurat(),
            MaskFamily::LogNormal => (kappa * stream.normal_ziggurat() - 0.5 * kappa * kappa).exp(),
            MaskFamily::TruncatedGaussian => loop {
                let z = stream.normal_ziggurat();
                if z.abs() <= self.truncation {
                    break 1.0 + kappa * z;
                }
            },
            MaskFamily::Bernoulli => {
                let p = self.keep_prob.unwrap_or(1.0 / (1.0 + kappa * kappa));
                if stream.uniform() < p { 1.0 / p } else { 0.0 }
            }
        }
    }

    /// Fills `out` with independent coordinates for noise level `kappa` (the Gaussian family
    /// draws its normals in bulk).
    pub fn fill(&self, kappa: f64, stream: &mut Stream, out: &mut [f64]) {
        match self.family {
            MaskFamily::Gaussian => {
                stream.fill_normal_ziggurat(out);
                out.iter_mut().for_each(|c| *c = 1.0 + kappa * *c);
            }
            _ => out.iter_mut().for_each(|c| *c = self.draw(kappa, stream)),
        }
    }

    /// Standard deviation of one coordinate at noise level `kappa`.
    pub fn std(&self, kappa: f64) -> f64 {
        match self.family {
            MaskFamily::Gaussian => kappa,
            MaskFamily::LogNormal => ((kappa * kappa).exp() - 1.0).sqrt(),
            MaskFamily::TruncatedGaussian => {
                // Var of N(0,1) truncated to [−b, b] is 1 − 2bφ(b)/(2Φ(b) − 1).
                let b = self.truncation;
                let phi = (-0.5 * b * b).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let mass = libm::erf(b / std::f64::consts::SQRT_2);
                kappa * (1.0 - 2.0 * b * phi / mass).sqrt()
            }
            MaskFamily::Bernoulli => {
                let p = self.keep_prob.unwrap_or(1.0 / (1.0 + kappa * kappa));
                ((1.0 - p) / p).sqrt()
            }
        }
    }
}

/// The state of a mask's host streams: what a checkpoint saves so that a resumed run draws the
/// same masks. See [`InputMask::noise_state`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskState {
    /// Per replica, the call stream ([`Stream::state`]).
    pub streams: Vec<[u64; 6]>,
    /// Per replica, the root of the fixed-per-sample masks.
    pub roots: Vec<[u64; 6]>,
}

/// Per-replica host streams of a mask, behind a lock so that [`InputMask::forward`] can take
/// `&self` like every Burn layer. A clone is an independent copy that continues identically.
///
/// Burn sees the state as an integer parameter (`streams`: every 64-bit word as four 16-bit
/// values, which fit every backend's integer type), so the record of any model holding the mask
/// ([`Module::into_record`], [`Module::load_record`]) saves and restores the streams with the
/// weights: a resumed run draws the masks an uninterrupted one would.
struct MaskStreams {
    state: Mutex<MaskState>,
    id: ParamId,
    /// Where the recorded parameter lives: the device of the last masked input (the default
    /// device before any), so recording never touches another backend.
    device: Mutex<Option<Device>>,
}

impl MaskStreams {
    fn new(seeds: &[u64]) -> Self {
        let streams: Vec<Stream> = seeds.iter().map(|&s| Stream::new(s, tag::MASK)).collect();
        let roots = streams
            .iter()
            .map(|s| s.substream(u64::MAX).state())
            .collect();
        let streams = streams.iter().map(Stream::state).collect();
        Self {
            state: Mutex::new(MaskState { streams, roots }),
            id: ParamId::new(),
            device: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MaskState> {
        // A panic elsewhere cannot leave a half-written state: every update is one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as the parameter Burn records.
    fn param(&self) -> Param<Tensor<1, Int>> {
        let state = self.lock();
        let chunks: Vec<i64> = state
            .streams
            .iter()
            .chain(&state.roots)
            .flatten()
            .flat_map(|&w| (0..4).map(move |k| ((w >> (16 * k)) & 0xFFFF) as i64))
            .collect();
        let len = chunks.len();
        let device = self.device().unwrap_or_default();
        let value = Tensor::from_data(TensorData::new(chunks, [len]), &device);
        Param::initialized(self.id, value)
    }

    fn device(&self) -> Option<Device> {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_device(&self, device: &Device) {
        let mut slot = self.device.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref() != Some(device) {
            *slot = Some(device.clone());
        }
    }

    /// Takes the state back from a (possibly replaced) recorded parameter.
    fn set_from(&mut self, param: Param<Tensor<1, Int>>) {
        self.id = param.id;
        let chunks: Vec<i64> = param.val().into_data().iter::<i64>().collect();
        let mut state = self.lock();
        let r = state.streams.len();
        if chunks.len() != r * 12 * 4 {
            return; // not a mask state of this shape: keep the current one
        }
        let words: Vec<u64> = chunks
            .chunks_exact(4)
            .map(|c| (0..4).fold(0u64, |w, k| w | ((c[k] as u64 & 0xFFFF) << (16 * k))))
            .collect();
        for (i, state6) in words.chunks_exact(6).enumerate() {
            let s: [u64; 6] = state6.try_into().expect("six words");
            if i < r {
                state.streams[i] = s;
            } else {
                state.roots[i - r] = s;
            }
        }
    }
}

impl Clone for MaskStreams {
    fn clone(&self) -> Self {
        Self {
            state: Mutex::new(self.lock().clone()),
            id: self.id,
            device: Mutex::new(self.device()),
        }
    }
}

impl std::fmt::Debug for MaskStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskStreams({} replicas)", self.lock().streams.len())
    }
}

impl Module for MaskStreams {
    fn collect_devices(&self, devices: Devices) -> Devices {
        // Host state: it lives on no device of the model.
        devices
    }

    fn fork(self, device: &Device) -> Self {
        self.set_device(device);
        self
    }

    fn to_device(self, device: &Device) -> Self {
        self.set_device(device);
        self
    }

    fn train(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_int(&self.param());
    }

    fn map<M: ModuleMapper>(mut self, mapper: &mut M) -> Self {
        let param = mapper.map_int(self.param());
        self.set_from(param);
        self
    }
}

impl ModuleDisplayDefault for MaskStreams {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .add_formatted(&format!("{} host streams", self.lock().streams.len()))
            .optional()
    }
}

impl ModuleDisplay for MaskStreams {}

/// Rows per block of a mask call. Each block draws from its own sub-stream of the call, so
/// blocks can be drawn in parallel and the masks do not depend on how the rows are split.
pub const MASK_BLOCK_ROWS: usize = 32;

/// The host masks of one call (one step), drawn block by block: see [`InputMask::begin`].
pub struct MaskCall {
    config: MaskConfig,
    kappa: Vec<f64>,
    /// Per replica: the call's stream, or `None` where the mask is the identity.
    calls: Vec<Option<Stream>>,
    roots: Vec<Stream>,
}

impl MaskCall {
    /// Whether replica `r`'s mask is the identity in this call (κ = 0 or evaluation mode).
    pub fn is_identity(&self, r: usize) -> bool {
        self.calls[r].is_none()
    }

    /// Writes the masks of block `block` of the call (call rows `block·MASK_BLOCK_ROWS ..`),
    /// whose dataset indices are `rows`, for replica `r`.
    ///
    /// # Shapes
    /// - `rows`: at most [`MASK_BLOCK_ROWS`] indices; `out`: `rows.len() × d` values
    pub fn fill_block(&self, r: usize, block: usize, rows: &[usize], d: usize, out: &mut [f64]) {
        debug_assert_eq!(out.len(), rows.len() * d);
        let Some(call) = &self.calls[r] else {
            out.fill(1.0);
            return;
        };
        let (config, kappa) = (&self.config, self.kappa[r]);
        match config.resample {
            MaskResample::Fresh => {
                config.fill(kappa, &mut call.substream(block as u64), out);
            }
            MaskResample::FixedPerSample => {
                for (row, &i) in out.chunks_mut(d).zip(rows) {
                    config.fill(kappa, &mut self.roots[r].substream(i as u64), row);
                }
            }
            MaskResample::SharedAcrossBatch => {
                // Every block redraws the call's one shared mask from the same sub-stream.
                let mut shared = vec![0.0; d];
                config.fill(kappa, &mut call.substream(u64::MAX), &mut shared);
                for row in out.chunks_mut(d) {
                    row.copy_from_slice(&shared);
                }
            }
        }
    }

    /// Every replica's masks for the samples `rows`.
    ///
    /// # Shapes
    /// Returns `R × rows.len() × d` values, replica-major then row-major.
    pub fn fill(&self, rows: &[usize], d: usize) -> Vec<f64> {
        let n = rows.len();
        let mut out = vec![1.0; self.kappa.len() * n * d];
        for (r, chunk) in out.chunks_mut(n * d).enumerate() {
            for (b, (block, block_rows)) in chunk
                .chunks_mut(MASK_BLOCK_ROWS * d)
                .zip(rows.chunks(MASK_BLOCK_ROWS))
                .enumerate()
            {
                self.fill_block(r, b, block_rows, d, block);
            }
        }
        out
    }
}

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
    pub fn load_noise_state(&self, state: MaskState) -> Result<(), String> {
        let r = self.replicas();
        if state.streams.len() != r || state.roots.len() != r {
            return Err(format!(
                "mask state holds {} streams and {} roots for {r} replicas",
                state.streams.len(),
                state.roots.len()
            ));
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
        if !self.is_active() {
            return x;
        }
        let dims = x.dims();
        let (shape, n, d) = self.layout(&dims);
        assert_eq!(
            rows.len(),
            n,
            "mask: {} row indices for {n} samples",
            rows.len()
        );
        let device = x.device();
        self.streams.set_device(&device);
        let c = match self.config.noise {
            MaskNoise::Stream => {
                let values = self.sample(rows, d);
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
