//! Multiplicative input masks: x ↦ x ⊙ c with E c = 1.
//!
//! The Gaussian mask c ~ N(1, κ²) is the paper's; the other families share the interface so an
//! experiment can drop in a different mask by changing one config field.

use burn::module::{Flag, Module, Param};
use burn::tensor::{Device, Tensor};
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

/// Configuration of an input mask. κ itself is per replica and given at [`MaskConfig::init`].
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
        }
    }
}

impl MaskConfig {
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
        Ok(())
    }

    /// A mask module for replicas with the given κ (one per replica), in training mode.
    pub fn init(&self, kappas: &[f64]) -> InputMask {
        InputMask {
            config: self.clone(),
            kappa: kappas.to_vec(),
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

/// Per-replica random streams of the masks. Owned by the training loop, not by the module, so
/// the module stays a plain value and replicas keep their own streams.
#[derive(Clone, Debug)]
pub struct MaskNoise {
    streams: Vec<Stream>,
    /// Roots of the fixed-per-sample streams (one per replica).
    roots: Vec<Stream>,
}

impl MaskNoise {
    /// Streams for replicas with the given seeds.
    pub fn new(seeds: &[u64]) -> Self {
        let streams: Vec<Stream> = seeds.iter().map(|&s| Stream::new(s, tag::MASK)).collect();
        let roots = streams.iter().map(|s| s.substream(u64::MAX)).collect();
        Self { streams, roots }
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.streams.len()
    }
}

/// Rows per block of a mask call. Each block draws from its own sub-stream of the call, so
/// blocks can be drawn in parallel and the masks do not depend on how the rows are split.
pub const MASK_BLOCK_ROWS: usize = 32;

/// The masks of one call (one step), drawn block by block: see [`InputMask::begin`].
pub struct MaskCall<'a> {
    config: &'a MaskConfig,
    kappa: &'a [f64],
    /// Per replica: the call's stream, or `None` where the mask is the identity.
    calls: Vec<Option<Stream>>,
    roots: &'a [Stream],
}

impl MaskCall<'_> {
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
        let (config, kappa) = (self.config, self.kappa[r]);
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
}

/// The masking layer: multiplies its input by a mask while training, identity in evaluation.
#[derive(Module, Debug)]
pub struct InputMask {
    /// Mask family and resampling rule.
    #[module(skip)]
    pub config: MaskConfig,
    /// κ of each replica.
    #[module(skip)]
    pub kappa: Vec<f64>,
    /// Training mode flag: `valid()` turns the mask into the identity.
    pub training: Param<Flag>,
}

impl InputMask {
    /// Whether the mask currently acts (training mode and some κ > 0).
    pub fn is_active(&self) -> bool {
        self.training.is_enabled() && self.kappa.iter().any(|&k| k > 0.0)
    }

    /// Starts one mask call (one step): advances every replica's stream once, whatever the
    /// number of rows, and returns the source the rows' masks are drawn from.
    pub fn begin<'a>(&'a self, noise: &'a mut MaskNoise) -> MaskCall<'a> {
        let r_count = self.kappa.len();
        assert_eq!(
            noise.replicas(),
            r_count,
            "mask noise has {} replica streams for {} replicas",
            noise.replicas(),
            r_count
        );
        let active = self.training.is_enabled();
        let calls = (0..r_count)
            .map(|r| {
                // κ = 0 is exactly the identity, and no draw is consumed.
                (active && self.kappa[r] > 0.0).then(|| {
                    let stream = &mut noise.streams[r];
                    let key = stream.next_u64();
                    stream.substream(key)
                })
            })
            .collect();
        MaskCall {
            config: &self.config,
            kappa: &self.kappa,
            calls,
            roots: &noise.roots,
        }
    }

    /// Draws masks on the host for the samples `rows` (dataset indices) of every replica.
    ///
    /// # Shapes
    /// Returns `R × rows.len() × d` values, replica-major then row-major.
    pub fn sample(&self, noise: &mut MaskNoise, rows: &[usize], d: usize) -> Vec<f64> {
        let n = rows.len();
        let call = self.begin(noise);
        let mut out = vec![1.0; self.kappa.len() * n * d];
        for (r, chunk) in out.chunks_mut(n * d).enumerate() {
            for (b, (block, block_rows)) in chunk
                .chunks_mut(MASK_BLOCK_ROWS * d)
                .zip(rows.chunks(MASK_BLOCK_ROWS))
                .enumerate()
            {
                call.fill_block(r, b, block_rows, d, block);
            }
        }
        out
    }

    /// Applies the mask.
    ///
    /// # Shapes
    /// - `x`: `[R, n, d]` or `[1, n, d]` (shared inputs, broadcast over replicas)
    /// - returns `[R, n, d]` while active, `x` unchanged otherwise
    pub fn forward(&self, x: Tensor<3>, noise: &mut MaskNoise, rows: &[usize]) -> Tensor<3> {
        if !self.is_active() {
            return x;
        }
        let [_, n, d] = x.dims();
        let c = self.sample(noise, rows, d);
        let c: Tensor<3> = from_f64(c, [self.kappa.len(), n, d], &x.device());
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
}
