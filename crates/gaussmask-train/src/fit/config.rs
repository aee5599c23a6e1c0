//! What [`fit`](super::fit) is configured with: the optimizer, the schedule, DP-SGD.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

/// The optimizer of [`fit`](super::fit), from `burn::optim`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitOptimizer {
    /// (Stochastic) gradient descent, with heavy-ball momentum when `momentum` > 0; weight
    /// decay added to the gradient (L2).
    #[default]
    #[serde(alias = "sgd")]
    Gd,
    /// Adam, weight decay added to the gradient (L2).
    Adam,
    /// AdamW, decoupled weight decay.
    #[serde(alias = "adamw")]
    AdamW,
}

/// The learning-rate schedule of [`fit`](super::fit), from `burn::optim::lr_scheduler`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FitSchedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Cosine annealing from `lr` to `min_lr` over the run.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
}

/// Settings of [`fit`](super::fit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitConfig {
    /// Gradient steps.
    pub steps: usize,
    /// Rows per step; `None` is the full batch.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Learning rate (the schedule's start).
    pub lr: f64,
    /// Optimizer.
    #[serde(default)]
    pub optimizer: FitOptimizer,
    /// Momentum of `gd` (0 = none).
    #[serde(default)]
    pub momentum: f64,
    /// Weight decay: L2 for `gd` and `adam`, decoupled for `adamw`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: FitSchedule,
    /// Masks drawn per step; the loss is their mean (the masked-k objective). 1 with `dp`.
    #[serde(default = "one")]
    pub masks_per_step: usize,
    /// Seed of the minibatch order, of the device generator's seed at each step (what
    /// `burn::nn::Dropout` and on-device masks draw from) and of DP-SGD's noise.
    #[serde(default)]
    pub shuffle_seed: u64,
    /// Log every this many steps (the last step always).
    #[serde(default = "one")]
    pub log_every: usize,
    /// DP-SGD (absent: ordinary gradients).
    #[serde(default)]
    pub dp: Option<DpSgd>,
}

/// DP-SGD (Abadi et al. 2016): each sample's gradient is clipped to norm ≤ `clip`, the clipped
/// gradients are summed, Gaussian noise of std `noise_multiplier · clip` is added to every
/// coordinate, and the sum is divided by the batch size. Per-sample gradients need a model
/// whose loss on one sample does not depend on its batch-mates (no batch norm).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSgd {
    /// Clipping norm C.
    pub clip: f64,
    /// Noise multiplier σ.
    pub noise_multiplier: f64,
}

impl DpSgd {
    /// Checks both fields; the error names the field under `at` (e.g. `train.dp`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(format!(
                "{at}.clip must be a finite number > 0, got {}",
                self.clip
            ));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(format!(
                "{at}.noise_multiplier must be a finite number ≥ 0, got {}",
                self.noise_multiplier
            ));
        }
        Ok(())
    }
}

fn one() -> usize {
    1
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: None,
            lr: 1e-3,
            optimizer: FitOptimizer::Gd,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: FitSchedule::Constant,
            masks_per_step: 1,
            shuffle_seed: 0,
            log_every: 1,
            dp: None,
        }
    }
}

impl FitConfig {
    /// Checks every field against a dataset of `n` rows; the error names the field (under
    /// `train.`).
    pub fn validate(&self, n: usize) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.steps == 0 {
            return Err("train.steps must be ≥ 1, got 0".into());
        }
        if !positive(self.lr) {
            return Err(format!(
                "train.lr must be a finite number > 0, got {}",
                self.lr
            ));
        }
        if let Some(b) = self.batch_size
            && !(1..=n).contains(&b)
        {
            return Err(format!(
                "train.batch_size must lie in 1..={n} (the rows), got {b}"
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "train.momentum must lie in [0, 1), got {}",
                self.momentum
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "train.weight_decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if let FitSchedule::Cosine { min_lr } = self.schedule
            && !(0.0..=self.lr).contains(&min_lr)
        {
            return Err(format!(
                "train.schedule.min_lr must lie in [0, lr], got {min_lr}"
            ));
        }
        if self.masks_per_step == 0 {
            return Err("train.masks_per_step must be ≥ 1, got 0".into());
        }
        if self.log_every == 0 {
            return Err("train.log_every must be ≥ 1, got 0".into());
        }
        if let Some(dp) = &self.dp {
            dp.validate("train.dp")?;
            // A per-sample gradient sees one mask; a mean over k would change what is clipped.
            if self.masks_per_step != 1 {
                return Err(format!(
                    "train.masks_per_step must be 1 with train.dp (DP-SGD clips one masked \
                     gradient per sample), got {}",
                    self.masks_per_step
                ));
            }
        }
        self.scheduler().map(|_| ())
    }

    /// The `burn::optim` optimizer these settings describe.
    pub fn optimizer(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.optimizer {
            FitOptimizer::Gd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                }))
                .init(),
            FitOptimizer::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            FitOptimizer::AdamW => AdamWConfig::new()
                .with_weight_decay(self.weight_decay as f32)
                .init(),
        }
    }

    /// The `burn::optim::lr_scheduler` schedule these settings describe.
    pub fn scheduler(&self) -> Result<ModuleLrScheduler, String> {
        match self.schedule {
            FitSchedule::Constant => Ok(ModuleLrScheduler::new(self.lr)),
            FitSchedule::Cosine { min_lr } => {
                CosineAnnealingLrSchedulerConfig::new(self.lr, self.steps)
                    .with_min_lr(min_lr)
                    .init()
                    .map_err(|e| format!("train.schedule: {e}"))
            }
        }
    }
}
