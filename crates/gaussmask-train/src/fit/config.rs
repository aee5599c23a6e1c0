//! What [`fit`](super::fit) is configured with: the optimizer, the schedule, DP-SGD.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use gaussmask_core::InputError;
use serde::{Deserialize, Serialize};

/// The optimizer, from `burn::optim`: the one vocabulary of every training config (`fit`, the
/// image classifiers, `gaussmask train`, the two-layer engines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// (Stochastic) gradient descent, with heavy-ball momentum when `momentum` > 0; weight
    /// decay added to the gradient (L2, PyTorch's `SGD(weight_decay)`).
    #[default]
    #[serde(alias = "sgd")]
    Gd,
    /// Adam (Kingma & Ba); weight decay added to the gradient (L2, PyTorch's
    /// `Adam(weight_decay)`).
    Adam,
    /// AdamW: weight decay decoupled from the gradient, w ← w − lr·λ·w.
    #[serde(rename = "adamw", alias = "adam-w")]
    AdamW,
}

impl Optimizer {
    /// The `burn::optim` optimizer with `momentum` (GD only) and weight decay λ.
    pub fn init(self, momentum: f64, weight_decay: f64) -> ModuleOptimizer {
        let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
        match self {
            Self::Gd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                }))
                .init(),
            Self::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            Self::AdamW => AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .init(),
        }
    }

    /// Checks the rates every optimizer config has; errors name the field under `at` (e.g.
    /// `train`).
    pub fn check(at: &str, lr: f64, momentum: f64, weight_decay: f64) -> Result<(), InputError> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("{at}.lr must be a finite number > 0, got {lr}").into());
        }
        if !(0.0..1.0).contains(&momentum) {
            return Err(format!("{at}.momentum must lie in [0, 1), got {momentum}").into());
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(format!(
                "{at}.weight_decay must be a finite number ≥ 0, got {weight_decay}"
            )
            .into());
        }
        Ok(())
    }
}

/// The learning-rate schedule over the whole run, from `burn::optim::lr_scheduler`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Cosine annealing from `lr` to `min_lr` over the run: lr_t = min_lr + ½(lr − min_lr)(1 +
    /// cos(π t/T)).
    Cosine,
}

impl Schedule {
    /// The `burn::optim::lr_scheduler` schedule from `lr` (to `min_lr`, cosine) over `steps`.
    pub fn init(self, lr: f64, min_lr: f64, steps: usize) -> Result<ModuleLrScheduler, InputError> {
        match self {
            Self::Constant => Ok(ModuleLrScheduler::new(lr)),
            Self::Cosine => CosineAnnealingLrSchedulerConfig::new(lr, steps)
                .with_min_lr(min_lr)
                .init()
                .map_err(|e| InputError::new(format!("train.schedule: {e}"))),
        }
    }
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
    pub optimizer: Optimizer,
    /// Momentum of `gd` (0 = none).
    #[serde(default)]
    pub momentum: f64,
    /// Weight decay: L2 for `gd` and `adam`, decoupled for `adamw`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: Schedule,
    /// Final learning rate of the cosine schedule.
    #[serde(default)]
    pub min_lr: f64,
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

/// DP-SGD (Abadi et al. 2016) as Opacus runs it and the accountants model it: each step's
/// batch is a Poisson sample (every row joins independently with probability
/// q = [`FitConfig::sampling_rate`], `batch_size / n`), each sample's gradient is clipped to
/// norm ≤ `clip`, the clipped gradients are summed, Gaussian noise of std
/// `noise_multiplier · clip` is added to every coordinate, and the sum is divided by the
/// expected batch size q·n. The ε of a run is `gaussmask_privacy::pld_epsilon(q, σ, steps,
/// δ)`. Per-sample gradients need a model whose loss on one sample does not depend on its
/// batch-mates (no batch norm).
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
    pub fn validate(&self, at: &str) -> Result<(), InputError> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(format!("{at}.clip must be a finite number > 0, got {}", self.clip).into());
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(format!(
                "{at}.noise_multiplier must be a finite number ≥ 0, got {}",
                self.noise_multiplier
            )
            .into());
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
            optimizer: Optimizer::Gd,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            min_lr: 0.0,
            masks_per_step: 1,
            shuffle_seed: 0,
            log_every: 1,
            dp: None,
        }
    }
}

impl FitConfig {
    /// DP-SGD's Poisson sampling rate over `n` rows: `batch_size / n` (1 for full batches).
    pub fn sampling_rate(&self, n: usize) -> f64 {
        match self.batch_size {
            Some(b) => b.min(n) as f64 / n.max(1) as f64,
            None => 1.0,
        }
    }

    /// Checks every field against a dataset of `n` rows; the error names the field (under
    /// `train.`).
    pub fn validate(&self, n: usize) -> Result<(), InputError> {
        if self.steps == 0 {
            return Err("train.steps must be ≥ 1, got 0".into());
        }
        Optimizer::check("train", self.lr, self.momentum, self.weight_decay)?;
        if let Some(b) = self.batch_size
            && !(1..=n).contains(&b)
        {
            return Err(format!("train.batch_size must lie in 1..={n} (the rows), got {b}").into());
        }
        if self.schedule == Schedule::Cosine && !(0.0..=self.lr).contains(&self.min_lr) {
            return Err(format!("train.min_lr must lie in [0, lr], got {}", self.min_lr).into());
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
                )
                .into());
            }
        }
        self.scheduler().map(|_| ())
    }

    /// The `burn::optim` optimizer these settings describe.
    pub fn optimizer(&self) -> ModuleOptimizer {
        self.optimizer.init(self.momentum, self.weight_decay)
    }

    /// The `burn::optim::lr_scheduler` schedule these settings describe.
    pub fn scheduler(&self) -> Result<ModuleLrScheduler, InputError> {
        self.schedule.init(self.lr, self.min_lr, self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        optimizer: Optimizer,
        schedule: Schedule,
    }

    #[test]
    fn every_spelling_of_an_optimizer_in_the_configs_parses_to_one_name() {
        let parse = |o: &str| {
            toml::from_str::<Section>(&format!("optimizer = \"{o}\"\nschedule = \"cosine\""))
                .map(|s| (s.optimizer, s.schedule))
        };
        for (text, optimizer) in [
            ("gd", Optimizer::Gd),
            ("sgd", Optimizer::Gd),
            ("adam", Optimizer::Adam),
            ("adamw", Optimizer::AdamW),
            ("adam-w", Optimizer::AdamW),
        ] {
            assert_eq!(
                parse(text).unwrap(),
                (optimizer, Schedule::Cosine),
                "{text}"
            );
        }
        assert!(parse("rmsprop").is_err());
    }

    #[test]
    fn the_two_layer_engines_refuse_adamw_naming_the_field() {
        let config = crate::TrainConfig {
            optimizer: Optimizer::AdamW,
            ..toml::from_str("steps = 10\nlr = 0.1").unwrap()
        };
        let e = config.validate(10).unwrap_err();
        assert!(e.starts_with("train.optimizer"), "{e}");
    }
}
