//! The config of `gaussmask train` (`configs/train.toml` is the commented default): `[data]`
//! where the samples come from, `[model]` and `[model.mask]` what is trained, `[train]` how.

use std::path::PathBuf;

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::HarnessError;
use gaussmask_harness::config::{parse, require};
use gaussmask_nn::image::{Activation, Architecture, ImageModelConfig};
use gaussmask_nn::{KappaGrid, MaskConfig};
use gaussmask_privacy::pld::DEFAULT_GRID;
use gaussmask_privacy::{ACCOUNTANT, noise_for_epsilon, pld_epsilon};
use gaussmask_train::fit::{DpSgd, FitConfig, Optimizer, Schedule};
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

impl Task {
    /// The name of the task's metric in file and column names: "mse" or "accuracy".
    pub fn metric(self) -> &'static str {
        match self {
            Task::Regression => "mse",
            Task::Classification => "accuracy",
        }
    }
}

/// Where the samples come from (`data.source`), with the fields that source reads: a field
/// another source reads is refused, not ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Source {
    /// A CSV file with a header row.
    Csv(CsvSource),
    /// `.npy` arrays: inputs `[n, d]` (or `[n, h, w]`, `[n, c, h, w]`) and targets `[n]`.
    Npy(NpySource),
    /// An IDX image file and its IDX label file, as MNIST ships.
    Idx(IdxSource),
    /// The seeded synthetic regression problem of the paper (`[data.synthetic]`).
    Synthetic(SyntheticSource),
}

/// `source = "csv"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSource {
    /// The CSV file.
    pub path: PathBuf,
    /// The column to predict.
    pub target: String,
    /// The columns that are inputs; by default every other column whose first row holds a
    /// number.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The field separator (one character).
    #[serde(default = "comma")]
    pub delimiter: String,
    /// A separate test set with the same columns.
    #[serde(default)]
    pub test_path: Option<PathBuf>,
}

/// `source = "npy"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpySource {
    /// The inputs.
    pub inputs: PathBuf,
    /// The targets.
    pub targets: PathBuf,
    /// A separate test set's inputs (with `test_labels`).
    #[serde(default)]
    pub test_path: Option<PathBuf>,
    /// The test set's targets.
    #[serde(default)]
    pub test_labels: Option<PathBuf>,
}

/// `source = "idx"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdxSource {
    /// The IDX image file.
    pub path: PathBuf,
    /// The IDX label file.
    pub labels: PathBuf,
    /// A separate test set's IDX images (with `test_labels`).
    #[serde(default)]
    pub test_path: Option<PathBuf>,
    /// The test set's IDX labels.
    #[serde(default)]
    pub test_labels: Option<PathBuf>,
}

/// `source = "synthetic"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// The problem; 500 samples in 20 dimensions by default.
    #[serde(default)]
    pub synthetic: Option<SyntheticConfig>,
}

impl Source {
    /// The name `data.source` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Csv(_) => "csv",
            Source::Npy(_) => "npy",
            Source::Idx(_) => "idx",
            Source::Synthetic(_) => "synthetic",
        }
    }
}

/// The `[data]` section: the source's own fields (see [`Source`]) beside these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Where the samples come from. Unknown keys reach the source, which refuses them.
    #[serde(flatten)]
    pub source: Source,
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
    /// Image shape (channels, height, width) of flattened inputs, for `model.kind = "cnn"` on
    /// CSV or `.npy` data (IDX files and image-shaped `.npy` arrays carry their own).
    #[serde(default)]
    pub shape: Option<[usize; 3]>,
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

/// Which network (`model.kind`), with the fields that network reads: a field another kind
/// reads is refused, not ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelKind {
    /// The paper's f(W, x) = (1/√m) Σ_r a_r ReLU(w_rᵀx) (regression only).
    TwoLayer(TwoLayerSpec),
    /// Dense layers.
    Mlp(MlpSpec),
    /// Conv blocks, then dense layers.
    Cnn(CnnSpec),
}

/// `kind = "two-layer"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoLayerSpec {
    /// Hidden width m.
    #[serde(default = "default_width")]
    pub width: usize,
    /// Initialization scale τ (w_r ~ N(0, τ² I)).
    #[serde(default = "one")]
    pub tau: f64,
    /// Train the output signs a too.
    #[serde(default)]
    pub train_output: bool,
}

/// `kind = "mlp"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    /// Widths of the hidden dense layers.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Nonlinearity of the hidden dense layers.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout probability after each hidden layer.
    #[serde(default)]
    pub dropout: f64,
}

/// `kind = "cnn"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnSpec {
    /// Output channels of each conv block.
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// Side of the square kernels (odd).
    #[serde(default = "default_kernel")]
    pub kernel: usize,
    /// Batch normalization in the conv blocks.
    #[serde(default = "yes")]
    pub batch_norm: bool,
    /// Widths of the head's hidden dense layers.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Nonlinearity of the head's hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout probability before the dense head.
    #[serde(default)]
    pub dropout: f64,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ModelKind::TwoLayer(_) => "two-layer",
            ModelKind::Mlp(_) => "mlp",
            ModelKind::Cnn(_) => "cnn",
        })
    }
}

/// The `[model]` section (without `mask.kappa`, which [`JobConfig`] holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which network. Unknown keys reach it, which refuses them.
    #[serde(flatten)]
    pub kind: ModelKind,
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

impl MlpSpec {
    /// The image-model config of this MLP behind `mask`.
    pub fn image(&self, mask: &MaskConfig) -> ImageModelConfig {
        ImageModelConfig {
            architecture: Architecture::Mlp,
            hidden: self.hidden.clone(),
            activation: self.activation,
            dropout: self.dropout,
            mask: mask.clone(),
            ..ImageModelConfig::default()
        }
    }
}

impl CnnSpec {
    /// The image-model config of this CNN behind `mask`.
    pub fn image(&self, mask: &MaskConfig) -> ImageModelConfig {
        ImageModelConfig {
            architecture: Architecture::Cnn,
            hidden: self.hidden.clone(),
            activation: self.activation,
            channels: self.channels.clone(),
            kernel: self.kernel,
            batch_norm: self.batch_norm,
            dropout: self.dropout,
            mask: mask.clone(),
        }
    }
}

impl ModelConfig {
    /// The image-model config of an `mlp` or `cnn`; `None` for the two-layer network.
    pub fn image(&self) -> Option<ImageModelConfig> {
        match &self.kind {
            ModelKind::TwoLayer(_) => None,
            ModelKind::Mlp(m) => Some(m.image(&self.mask)),
            ModelKind::Cnn(c) => Some(c.image(&self.mask)),
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
    /// DP-SGD (`[train.dp]`), off when left out.
    #[serde(default)]
    pub dp: Option<DpSection>,
}

/// `[train.dp]`: DP-SGD as Opacus runs it (Poisson-sampled batches of expected size
/// `batch_size`, per-sample clipping, Gaussian noise), with ε from the PLD accountant. Give the
/// noise multiplier, or the ε to reach (the noise is then solved for it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSection {
    /// Clipping norm C of each sample's gradient.
    pub clip: f64,
    /// Noise multiplier σ (noise std σ·C); 0 clips without noise (no finite ε).
    #[serde(default)]
    pub noise_multiplier: Option<f64>,
    /// The ε to reach at `delta` instead of a noise multiplier.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// δ of the ε.
    #[serde(default = "default_delta")]
    pub delta: f64,
}

fn default_delta() -> f64 {
    1e-5
}

/// DP-SGD as a run does it: the resolved noise and the ε it gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    /// Which accountant gave `epsilon`.
    pub accountant: String,
    /// Clipping norm.
    pub clip: f64,
    /// Noise multiplier (given, or solved for the target ε).
    pub noise_multiplier: f64,
    /// Poisson sampling rate q = batch / training rows.
    pub sampling_rate: f64,
    /// Steps of each model.
    pub steps: usize,
    /// δ.
    pub delta: f64,
    /// ε at δ (none without noise).
    pub epsilon: Option<f64>,
}

impl DpSection {
    fn validate(&self) -> Result<(), String> {
        DpSgd {
            clip: self.clip,
            noise_multiplier: self.noise_multiplier.unwrap_or(0.0),
        }
        .validate("train.dp")?;
        require(
            self.noise_multiplier.is_some() != self.epsilon.is_some(),
            "train.dp.epsilon",
            "given instead of train.dp.noise_multiplier (give one of them)",
            if self.epsilon.is_some() {
                "both"
            } else {
                "neither"
            },
        )?;
        if let Some(e) = self.epsilon {
            require(
                e.is_finite() && e > 0.0,
                "train.dp.epsilon",
                "a number > 0",
                e,
            )?;
        }
        require(
            self.delta > 0.0 && self.delta < 1.0,
            "train.dp.delta",
            "in (0, 1)",
            self.delta,
        )
    }

    /// The noise and ε of DP-SGD over `n` training rows with `train`'s batches and steps.
    ///
    /// # Errors
    /// A target ε no noise reaches.
    pub fn resolve(&self, train: &TrainSection, n: usize) -> Result<Privacy, String> {
        let fit = train.fit_config(n, 0);
        let q = fit.sampling_rate(n);
        let steps = fit.steps as u64;
        let sigma = match (self.noise_multiplier, self.epsilon) {
            (Some(s), _) => s,
            (None, Some(e)) => noise_for_epsilon(q, steps, self.delta, e)
                .map_err(|m| format!("train.dp.epsilon: {m}"))?,
            (None, None) => 0.0,
        };
        let epsilon = pld_epsilon(q, sigma, steps, self.delta, DEFAULT_GRID);
        Ok(Privacy {
            accountant: ACCOUNTANT.into(),
            clip: self.clip,
            noise_multiplier: sigma,
            sampling_rate: q,
            steps: fit.steps,
            delta: self.delta,
            epsilon: epsilon.is_finite().then_some(epsilon),
        })
    }
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
    pub kappas: KappaGrid,
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
    data: DataConfig,
    model: ModelConfig,
    #[serde(default)]
    train: Option<TrainSection>,
}

impl JobConfig {
    /// Parses and validates a resolved config table; errors name the field. A left-out
    /// `data.source` is `"synthetic"`, a left-out `model.kind` is `"mlp"`.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut table = table.clone();
        for (section, tag, default) in [("data", "source", "synthetic"), ("model", "kind", "mlp")] {
            let entry = table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            let Value::Table(t) = entry else {
                return Err(HarnessError::input(format!(
                    "{section} must be a table, got {entry}"
                )));
            };
            t.entry(tag).or_insert_with(|| default.into());
        }
        let kappa = table
            .get_mut("model")
            .and_then(Value::as_table_mut)
            .and_then(|m| m.get_mut("mask"))
            .and_then(Value::as_table_mut)
            .and_then(|mask| mask.remove("kappa"));
        let kappas = match kappa {
            None => KappaGrid::one("model.mask.kappa", 0.0).map_err(HarnessError::input)?,
            Some(v) => kappas(&v).map_err(HarnessError::input)?,
        };
        let s: Sections = parse(&table)?;
        let train = match s.train {
            Some(t) => t,
            None => parse(&Table::new())?,
        };
        let job = Self {
            seed: s.seed,
            kappas,
            data: s.data,
            model: s.model,
            train,
        };
        job.validate().map_err(HarnessError::input)?;
        Ok(job)
    }

    /// Checks every field that can be checked without reading the data.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.data;
        let together = |test: &Option<PathBuf>, labels: &Option<PathBuf>, what: &str| {
            require(
                test.is_some() == labels.is_some(),
                "data.test_labels",
                &format!("given together with data.test_path ({what})"),
                if labels.is_some() {
                    "labels without inputs"
                } else {
                    "nothing"
                },
            )
        };
        match &d.source {
            Source::Csv(csv) => require(
                csv.delimiter.len() == 1,
                "data.delimiter",
                "one ASCII character",
                format!("{:?}", csv.delimiter),
            )?,
            Source::Npy(npy) => together(&npy.test_path, &npy.test_labels, ".npy targets")?,
            Source::Idx(idx) => {
                together(
                    &idx.test_path,
                    &idx.test_labels,
                    "IDX images and their labels",
                )?;
                require(
                    d.task == Task::Classification,
                    "data.task",
                    "\"classification\" for IDX images and labels",
                    "\"regression\"",
                )?;
            }
            Source::Synthetic(synthetic) => {
                require(
                    d.task == Task::Regression,
                    "data.task",
                    "\"regression\" for the synthetic problem",
                    "\"classification\"",
                )?;
                if let Some(s) = &synthetic.synthetic {
                    s.validate()
                        .map_err(|e| e.replacen("data.", "data.synthetic.", 1))?;
                }
            }
        }
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
        if let ModelKind::TwoLayer(two) = &m.kind {
            require(two.width >= 1, "model.width", "≥ 1", two.width)?;
            require(
                two.tau.is_finite() && two.tau > 0.0,
                "model.tau",
                "a number > 0",
                two.tau,
            )?;
            require(
                d.task == Task::Regression,
                "model.kind",
                "\"mlp\" or \"cnn\" for classification (the two-layer network has one output)",
                "\"two-layer\"",
            )?;
        }
        if let Some(image) = m.image() {
            // The image shape is only known with the data; check the rest now.
            image.validate([1, usize::MAX, usize::MAX])?;
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
        if let Some(dp) = &t.dp {
            dp.validate()?;
            if let ModelKind::Cnn(cnn) = &m.kind {
                require(
                    !cnn.batch_norm,
                    "model.batch_norm",
                    "false with train.dp (a per-sample gradient needs a loss that does not mix \
                     samples)",
                    true,
                )?;
            }
        }
        // The trainer's own checks (lr, momentum, weight decay) on a stand-in size.
        t.fit_config(usize::MAX, 0)
            .validate(usize::MAX)
            .map_err(|e| e.replace(&format!("1..={}", usize::MAX), "1..=n"))?;
        Ok(())
    }
}

/// `model.mask.kappa`: one number or a non-empty list of distinct numbers in [0, κ_max].
fn kappas(value: &Value) -> Result<KappaGrid, String> {
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
    Ok(KappaGrid::new("model.mask.kappa", list.ok_or_else(bad)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_source_and_kind_are_synthetic_and_mlp() {
        let job = JobConfig::from_table(&Table::new()).unwrap();
        assert_eq!(
            job.data.source,
            Source::Synthetic(SyntheticSource::default())
        );
        let ModelKind::Mlp(mlp) = &job.model.kind else {
            panic!("{:?}", job.model.kind)
        };
        assert_eq!(mlp.hidden, vec![256]);
        assert_eq!(*job.kappas, [0.0]);
    }

    #[test]
    fn every_kind_reads_back_from_the_json_the_manifest_holds() {
        for kind in ["two-layer", "mlp", "cnn"] {
            let table: Table = format!("[model]\nkind = \"{kind}\"\n[model.mask]\nkappa = 0.5\n")
                .parse()
                .unwrap();
            let model = JobConfig::from_table(&table).unwrap().model;
            let json = serde_json::to_string(&model).unwrap();
            assert!(json.contains(&format!("\"kind\":\"{kind}\"")), "{json}");
            let back: ModelConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, model);
            assert_eq!(back.image().is_none(), kind == "two-layer");
        }
    }

    #[test]
    fn the_commented_default_config_parses() {
        let table: Table = include_str!("../../../configs/train.toml").parse().unwrap();
        let job = JobConfig::from_table(&table).unwrap();
        assert!(matches!(job.model.kind, ModelKind::TwoLayer(_)));
        assert_eq!(*job.kappas, [0.0, 0.5]);
    }
}
