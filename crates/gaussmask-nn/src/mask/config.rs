//! What a mask is: its family, when it is redrawn, where its noise comes from, and the
//! per-replica κ and seed.

use burn::module::Param;
use gaussmask_core::InputError;
use serde::{Deserialize, Serialize};

use crate::rng::Stream;

use super::InputMask;
use super::streams::MaskStreams;

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
    pub fn validate(&self, at: &str) -> Result<(), InputError> {
        if !(self.truncation.is_finite() && self.truncation >= 0.5) {
            return Err(format!(
                "{at}.truncation must be a finite number ≥ 0.5, got {}",
                self.truncation
            )
            .into());
        }
        if let Some(p) = self.keep_prob
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!("{at}.keep_prob must lie in (0, 1], got {p}").into());
        }
        if self.noise == MaskNoise::Device && self.resample == MaskResample::FixedPerSample {
            return Err(format!(
                "{at}.noise = \"device\" cannot keep one mask per sample; use \"stream\" with \
                 {at}.resample = \"fixed-per-sample\""
            )
            .into());
        }
        Ok(())
    }

    /// A mask of noise level `kappa` for a model without a replica axis; `seed` keys its
    /// stream. In training mode, like [`burn::nn::Dropout`]: [`Module::valid`](burn::module::Module::valid) makes it the
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
