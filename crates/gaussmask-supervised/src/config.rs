//! The config of `gaussmask train` (`configs/train.toml` is the commented default): `[data]`
//! where the samples come from, `[model]` and `[model.mask]` what is trained, `[train]` how.

use std::path::{Path, PathBuf};

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::HarnessError;
use gaussmask_harness::config::{parse, require};
use gaussmask_nn::MaskConfig;
use gaussmask_nn::image::{Activation, Architecture, ImageModelConfig};
use gaussmask_train::fit::{FitConfig, Optimizer, Schedule};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// What the model predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A real-valued target; squared error.
    #[default]
    Regression,
    /// A class per sample (integer or text labels); cross-entropy.
    Classification,
}

/// Where the samples come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A CSV file with a header row (`path`, `target`, optional `features`).
    Csv,
    /// Two `.npy` files: `inputs` `[n, d]` (or `[n, h, w]`, `[n, c, h, w]`) and `targets` `[n]`.
    Npy,
    /// An IDX image file (`path`) and its IDX label file (`labels`), as MNIST ships.
    Idx,
    /// The seeded synthetic regression problem of the paper (`[data.synthetic]`).
    #[default]
    Synthetic,
}

/// The `[data]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Where the samples come from.
    #[serde(default)]
    pub source: Source,
    /// The CSV file, or the IDX image file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The IDX label file.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// The `.npy` inputs.
    #[serde(default)]
    pub inputs: Option<PathBuf>,
    /// The `.npy` targets.
    #[serde(default)]
    pub targets: Option<PathBuf>,
    /// The CSV column to predict.
    #[serde(default)]
    pub target: Option<String>,
    /// The CSV columns that are inputs; by default every other column whose first row holds a
    /// number.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The CSV field separator (one character).
    #[serde(default = "comma")]
    pub delimiter: String,
    /// Regression or classification.
    #[serde(default)]
    pub task: Task,
    /// Standardize every input (and a regression target) with the mean and standard deviation
    /// of the training part; the statistics are saved with the model.
    #[serde(default = "yes")]
    pub standardize: bool,
    /// Floor of the inputs' standard deviation in the standardization (in the inputs' units;
    /// images: grey levels).
    #[serde(default)]
    pub std_floor: f64,
    /// Fraction of the rows held out (seeded) for validation.
    #[serde(default = "default_validation")]
    pub validation: f64,
    /// Use at most this many rows, drawn at random (seeded); 0: all.
    #[serde(default)]
    pub max_rows: usize,
    /// A separate test set in the same format: the CSV or IDX image file, or `.npy` inputs.
    #[serde(default)]
    pub test_path: Option<PathBuf>,
    /// The test set's IDX labels, or `.npy` targets.
    #[serde(default)]
    pub test_labels: Option<PathBuf>,
    /// Image shape (channels, height, width) of flattened inputs, for `model.kind = "cnn"` on
    /// CSV or `.npy` data (IDX files and image-shaped `.npy` arrays carry their own).
    #[serde(default)]
    pub shape: Option<[usize; 3]>,
    /// The synthetic problem (`source = "synthetic"`).
    #[serde(default)]
    pub synthetic: Option<SyntheticConfig>,
}

/// The files of `[data]` its source reads, each one there: what [`crate::data::load`] opens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Files<'a> {
    /// A CSV file and the column to predict.
    Csv {
        /// `data.path`.
        path: &'a Path,
        /// `data.target`.
        target: &'a str,
    },
    /// `.npy` inputs and targets.
    Npy {
        /// `data.inputs`.
        inputs: &'a Path,
        /// `data.targets`.
        targets: &'a Path,
    },
    /// IDX images and labels.
    Idx {
        /// `data.path`.
        path: &'a Path,
        /// `data.labels`.
        labels: &'a Path,
    },
    /// The synthetic problem: no files.
    Synthetic,
}

impl DataConfig {
    /// The files the source needs.
    ///
    /// # Errors
    /// A field the source needs and the config lacks, named.
    pub fn files(&self) -> Result<Files<'_>, String> {
        fn need<'a, T: ?Sized>(
            value: Option<&'a T>,
            field: &str,
            source: Source,
        ) -> Result<&'a T, String> {
            value.ok_or_else(|| {
                format!(
                    "data.{field} must be set for source = \"{}\", got nothing",
                    source_name(source)
                )
            })
        }
        let s = self.source;
        Ok(match s {
            Source::Csv => Files::Csv {
                path: need(self.path.as_deref(), "path", s)?,
                target: need(self.target.as_deref(), "target", s)?,
            },
            Source::Npy => Files::Npy {
                inputs: need(self.inputs.as_deref(), "inputs", s)?,
                targets: need(self.targets.as_deref(), "targets", s)?,
            },
            Source::Idx => Files::Idx {
                path: need(self.path.as_deref(), "path", s)?,
                labels: need(self.labels.as_deref(), "labels", s)?,
            },
            Source::Synthetic => Files::Synthetic,
        })
    }
}

fn comma() -> String {
    ",".into()
}
fn yes() -> bool {
    true
}
fn default_validation() -> f64 {
    0.2
}

/// Which network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The paper's f(W, x) = (1/√m) Σ_r a_r ReLU(w_rᵀx) (regression only).
    TwoLayer,
    /// Dense layers (`hidden`, `activation`, `dropout`).
    #[default]
    Mlp,
    /// Conv blocks (`channels`, `kernel`, `batch_norm`), then dense layers.
    Cnn,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ModelKind::TwoLayer => "two-layer",
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        })
    }
}

/// The `[model]` section (without `mask.kappa`, which [`JobConfig`] holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Which network.
    #[serde(default)]
    pub kind: ModelKind,
    /// two-layer: hidden width m.
    #[serde(default = "default_width")]
    pub width: usize,
    /// two-layer: initialization scale τ (w_r ~ N(0, τ² I)).
    #[serde(default = "one")]
    pub tau: f64,
    /// two-layer: train the output signs a too.
    #[serde(default)]
    pub train_output: bool,
    /// mlp, cnn: widths of the hidden dense layers.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// mlp, cnn: nonlinearity of the hidden dense layers.
    #[serde(default)]
    pub activation: Activation,
    /// mlp, cnn: dropout probability.
    #[serde(default)]
    pub dropout: f64,
    /// cnn: output channels of each conv block.
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// cnn: side of the square kernels (odd).
    #[serde(default = "default_kernel")]
    pub kernel: usize,
    /// cnn: batch normalization in the conv blocks.
    #[serde(default = "yes")]
    pub batch_norm: bool,
    /// The input mask (κ aside).
    #[serde(default)]
    pub mask: MaskConfig,
}

fn default_width() -> usize {
    256
}
fn one() -> f64 {
    1.0
}
fn default_hidden() -> Vec<usize> {
    vec![256]
}
fn default_channels() -> Vec<usize> {
    vec![16, 32]
}
fn default_kernel() -> usize {
    5
}

impl ModelConfig {
    /// The image-model config of an `mlp` or `cnn`.
    pub fn dense(&self) -> ImageModelConfig {
        ImageModelConfig {
            architecture: match self.kind {
                ModelKind::Cnn => Architecture::Cnn,
                _ => Architecture::Mlp,
            },
            hidden: self.hidden.clone(),
            activation: self.activation,
            channels: self.channels.clone(),
            kernel: self.kernel,
            batch_norm: self.batch_norm,
            dropout: self.dropout,
            mask: self.mask.clone(),
        }
    }
}

/// The `[train]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// `gd` (with `momentum`), `adam` or `adamw`.
    #[serde(default = "adam")]
    pub optimizer: Optimizer,
    /// Learning rate (the schedule's start).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Momentum of `gd`.
    #[serde(default)]
    pub momentum: f64,
    /// Weight decay (L2 for gd and adam, decoupled for adamw).
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: Schedule,
    /// Passes over the training part (give `epochs` or `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Optimizer steps (instead of `epochs`).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Rows per step (full batches only: an epoch is ⌊n/b⌋ steps); 0: the whole training part.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Classification: label smoothing ε.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Models trained per κ, seeds `seed`, `seed + 1`, … (initial weights, masks, batches).
    #[serde(default = "one_usize")]
    pub seeds: usize,
    /// Steps between two rows of `metrics.csv`; 0: one row per epoch.
    #[serde(default)]
    pub log_every: usize,
}

fn adam() -> Optimizer {
    Optimizer::Adam
}
fn default_lr() -> f64 {
    1e-3
}
fn default_batch() -> usize {
    32
}
fn one_usize() -> usize {
    1
}

impl TrainSection {
    /// Rows per step for a training part of `n` rows.
    pub fn batch(&self, n: usize) -> usize {
        if self.batch_size == 0 {
            n
        } else {
            self.batch_size.min(n)
        }
    }

    /// Optimizer steps in one epoch over `n` rows.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.batch(n)).max(1)
    }

    /// Steps between two logged rows.
    pub fn log_interval(&self, n: usize) -> usize {
        match self.log_every {
            0 => self.steps_per_epoch(n),
            k => k,
        }
    }

    /// The generic trainer's settings for a training part of `n` rows, its streams keyed by
    /// `seed`.
    pub fn fit_config(&self, n: usize, seed: u64) -> FitConfig {
        let steps = match (self.steps, self.epochs) {
            (Some(s), _) => s,
            (None, e) => e.unwrap_or(100) * self.steps_per_epoch(n),
        };
        FitConfig {
            steps,
            batch_size: Some(self.batch(n)),
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            min_lr: 0.0,
            masks_per_step: 1,
            shuffle_seed: seed,
            log_every: 1,
            dp: None,
        }
    }
}

/// A whole `gaussmask train` config.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Base seed: the validation split, the row subset, the models' seeds.
    pub seed: u64,
    /// Mask levels κ: one model (per seed) for each.
    pub kappas: Vec<f64>,
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[train]`.
    pub train: TrainSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    seed: u64,
    #[serde(default = "default_data")]
    data: DataConfig,
    #[serde(default = "default_model")]
    model: ModelConfig,
    #[serde(default = "default_train")]
    train: TrainSection,
}

fn default_data() -> DataConfig {
    toml::from_str("").expect("every data field has a default")
}
fn default_model() -> ModelConfig {
    toml::from_str("").expect("every model field has a default")
}
fn default_train() -> TrainSection {
    toml::from_str("").expect("every train field has a default")
}

impl JobConfig {
    /// Parses and validates a resolved config table; errors name the field.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut table = table.clone();
        let kappa = table
            .get_mut("model")
            .and_then(Value::as_table_mut)
            .and_then(|m| m.get_mut("mask"))
            .and_then(Value::as_table_mut)
            .and_then(|mask| mask.remove("kappa"));
        let kappas = match kappa {
            None => vec![0.0],
            Some(v) => kappas(&v).map_err(HarnessError::input)?,
        };
        let s: Sections = parse(&table)?;
        let job = Self {
            seed: s.seed,
            kappas,
            data: s.data,
            model: s.model,
            train: s.train,
        };
        job.validate().map_err(HarnessError::input)?;
        Ok(job)
    }

    /// Checks every field that can be checked without reading the data.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.data;
        d.files()?;
        match d.source {
            Source::Csv | Source::Npy => {}
            Source::Idx => {
                require(
                    d.test_path.is_some() == d.test_labels.is_some(),
                    "data.test_labels",
                    "given together with data.test_path (IDX images and their labels)",
                    if d.test_labels.is_some() {
                        "labels without images"
                    } else {
                        "nothing"
                    },
                )?;
                require(
                    d.task == Task::Classification,
                    "data.task",
                    "\"classification\" for IDX images and labels",
                    "\"regression\"",
                )?;
            }
            Source::Synthetic => {
                require(
                    d.task == Task::Regression,
                    "data.task",
                    "\"regression\" for the synthetic problem",
                    "\"classification\"",
                )?;
                if let Some(s) = &d.synthetic {
                    s.validate()
                        .map_err(|e| e.replacen("data.", "data.synthetic.", 1))?;
                }
            }
        }
        require(
            d.delimiter.len() == 1,
            "data.delimiter",
            "one ASCII character",
            format!("{:?}", d.delimiter),
        )?;
        require(
            (0.0..1.0).contains(&d.validation),
            "data.validation",
            "a fraction in [0, 1)",
            d.validation,
        )?;
        require(
            d.std_floor.is_finite() && d.std_floor >= 0.0,
            "data.std_floor",
            "a number ≥ 0",
            d.std_floor,
        )?;
        if let Some(shape) = d.shape {
            require(
                shape.iter().all(|&s| s > 0),
                "data.shape",
                "three sizes ≥ 1 (channels, height, width)",
                format!("{shape:?}"),
            )?;
        }
        let m = &self.model;
        match m.kind {
            ModelKind::TwoLayer => {
                require(m.width >= 1, "model.width", "≥ 1", m.width)?;
                require(
                    m.tau.is_finite() && m.tau > 0.0,
                    "model.tau",
                    "a number > 0",
                    m.tau,
                )?;
                require(
                    d.task == Task::Regression,
                    "model.kind",
                    "\"mlp\" or \"cnn\" for classification (the two-layer network has one output)",
                    "\"two-layer\"",
                )?;
            }
            ModelKind::Mlp | ModelKind::Cnn => {
                // The image shape is only known with the data; check the rest now.
                m.dense().validate([1, usize::MAX, usize::MAX])?;
            }
        }
        m.mask.validate("model.mask")?;
        let t = &self.train;
        require(
            !(t.epochs.is_some() && t.steps.is_some()),
            "train.steps",
            "left out when train.epochs is set (give one of them)",
            t.steps.unwrap_or(0),
        )?;
        require(t.epochs != Some(0), "train.epochs", "≥ 1", 0)?;
        require(t.steps != Some(0), "train.steps", "≥ 1", 0)?;
        require(t.seeds >= 1, "train.seeds", "≥ 1", t.seeds)?;
        require(
            (0.0..1.0).contains(&t.label_smoothing),
            "train.label_smoothing",
            "in [0, 1)",
            t.label_smoothing,
        )?;
        // The trainer's own checks (lr, momentum, weight decay) on a stand-in size.
        t.fit_config(usize::MAX, 0)
            .validate(usize::MAX)
            .map_err(|e| e.replace(&format!("1..={}", usize::MAX), "1..=n"))?;
        Ok(())
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Csv => "csv",
        Source::Npy => "npy",
        Source::Idx => "idx",
        Source::Synthetic => "synthetic",
    }
}

/// `model.mask.kappa`: one number or a non-empty list of distinct numbers in [0, κ_max].
fn kappas(value: &Value) -> Result<Vec<f64>, String> {
    let number = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    };
    let list = match value {
        Value::Array(items) => items.iter().map(number).collect::<Option<Vec<f64>>>(),
        v => number(v).map(|k| vec![k]),
    };
    let bad = || {
        format!("model.mask.kappa must be a number ≥ 0 or a non-empty list of them, got {value}")
    };
    let list = list.ok_or_else(bad)?;
    gaussmask_nn::check_kappa_grid("model.mask.kappa", &list)?;
    Ok(list)
}
