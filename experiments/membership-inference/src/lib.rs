//! `membership-inference` (the paper's Figs. 5–7): does training under the input mask protect
//! a classifier's training set against membership inference? ML-Leaks adversary 1: four
//! disjoint equal splits (target-train, target-test, shadow-train, shadow-test); a shadow model
//! trained exactly like the target (mask included); an attack model (logistic regression on the
//! top-3 sorted posteriors) fitted on the shadow's members and non-members and scored on the
//! target's. The attack's ROC-AUC, accuracy, precision and recall are reported for each κ and
//! training length, beside the target's test accuracy, so the privacy–utility trade-off shows
//! in one table.

use std::path::PathBuf;

use burn::tensor::Device;
use gaussmask_data::images::{ImageDataset, Normalizer, disjoint_splits};
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext};
use gaussmask_nn::image::{ImageModelConfig, ImageNet};
use gaussmask_privacy::{AttackMetrics, MembershipFeatures, attack, top_sorted};
use gaussmask_train::classify::{ClassifierSpec, ClassifyConfig, accuracy, posteriors};
use image_accuracy::shared::{Images, load, model_label, train_checkpointed};
use serde::{Deserialize, Serialize};
use toml::Table;

/// Where the four splits come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitsConfig {
    /// Dataset; its training and test images are pooled before splitting.
    pub dataset: ImageDataset,
    /// Folder of the dataset's files; by default its install locations are searched.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Images in each of the four splits.
    pub split_size: usize,
    /// Floor of the per-pixel std of the normalization (fitted on target-train), grey levels.
    #[serde(default = "one")]
    pub std_floor: f64,
    /// Seed of the splits.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

/// The experiment's config (`configs/membership-inference.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipConfig {
    /// Seed of the target models; shadows use `seed + 1000`.
    #[serde(default)]
    pub seed: u64,
    /// Mask strengths.
    pub kappas: Vec<f64>,
    /// Training lengths (epochs) at which target and shadow are attacked; one run per model
    /// and κ trains to the longest and is evaluated on the way (the learning rate is constant,
    /// so the model after e epochs is the e-epoch model).
    pub epochs: Vec<usize>,
    /// The four splits.
    pub data: SplitsConfig,
    /// The target architectures.
    pub models: Vec<ImageModelConfig>,
    /// How target and shadow are trained (`epochs` comes from the list above).
    pub train: ClassifyConfig,
}

impl MembershipConfig {
    /// Parses and checks a config table; the error names the field.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut c: Self = parse(table)?;
        c.resolve().map_err(HarnessError::input)?;
        Ok(c)
    }

    /// Checks the fields and sets `train.epochs` to the longest of `epochs`.
    pub fn resolve(&mut self) -> Result<(), String> {
        image_accuracy::shared::check_kappas(&self.kappas)?;
        require(
            self.data.split_size >= 2,
            "data.split_size",
            "≥ 2",
            self.data.split_size,
        )?;
        require(
            self.data.std_floor.is_finite() && self.data.std_floor > 0.0,
            "data.std_floor",
            "a number > 0",
            self.data.std_floor,
        )?;
        image_accuracy::shared::check_dataset(self.data.dataset, self.data.path.as_deref())?;
        require(!self.models.is_empty(), "models", "a non-empty list", "[]")?;
        for m in &self.models {
            m.validate([1, 28, 28])?;
        }
        resolve_epochs(&mut self.epochs, &mut self.train)
    }
}

/// Checks a list of training lengths, sorts it, and sets `train.epochs` to the longest (a
/// `train.epochs` given in the config must be that); then checks `train`.
pub fn resolve_epochs(epochs: &mut Vec<usize>, train: &mut ClassifyConfig) -> Result<(), String> {
    require(
        !epochs.is_empty() && !epochs.contains(&0),
        "epochs",
        "a non-empty list of counts ≥ 1",
        format!("{epochs:?}"),
    )?;
    let longest = *epochs.iter().max().expect("non-empty");
    if train.epochs != 0 && train.epochs != longest {
        return Err(format!(
            "train.epochs = {} but the longest of epochs is {longest}: leave train.epochs out",
            train.epochs
        ));
    }
    train.epochs = longest;
    epochs.sort_unstable();
    epochs.dedup();
    train.validate("train")
}

/// The four normalized splits.
pub struct Splits {
    /// Target's training set (members).
    pub target_train: Images,
    /// Target's non-members; also its test set.
    pub target_test: Images,
    /// Shadow's training set.
    pub shadow_train: Images,
    /// Shadow's non-members.
    pub shadow_test: Images,
}

/// Loads the dataset, pools its training and test images, and cuts four disjoint seeded
/// splits of `split_size`, normalized with the statistics of target-train.
pub fn splits(data: &SplitsConfig) -> Result<Splits, HarnessError> {
    let (train, test) = load(data.dataset, data.path.as_deref())?;
    let all = train.concat(&test);
    let parts = disjoint_splits(all.n, &[data.split_size; 4], data.seed)
        .map_err(|e| HarnessError::input(format!("data.split_size: {e}")))?;
    let sets: Vec<_> = parts.iter().map(|rows| all.subset(rows)).collect();
    let norm = Normalizer::fit(&sets[0], data.std_floor);
    let mut it = sets.iter().map(|s| Images::from_set(s, &norm));
    Ok(Splits {
        target_train: it.next().expect("4 splits"),
        target_test: it.next().expect("4 splits"),
        shadow_train: it.next().expect("4 splits"),
        shadow_test: it.next().expect("4 splits"),
    })
}

/// A model's attack features and accuracies after some epochs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochEval {
    /// Training epochs done.
    pub epochs: usize,
    /// Top-3 posteriors of its members and non-members.
    pub features: MembershipFeatures,
    /// Accuracy on its training split.
    pub train_accuracy: f64,
    /// Accuracy on its held-out split (mask off).
    pub test_accuracy: f64,
}

/// Evaluations, one per epoch count.
pub type Evals = Vec<EpochEval>;

fn evaluate(
    epochs: usize,
    net: &ImageNet,
    config: &ImageModelConfig,
    members: &Images,
    non_members: &Images,
    device: &Device,
) -> EpochEval {
    let p_in = posteriors(net, config, members.view(), 500, device);
    let p_out = posteriors(net, config, non_members.view(), 500, device);
    EpochEval {
        epochs,
        features: MembershipFeatures {
            members: top_sorted(&p_in, members.classes),
            non_members: top_sorted(&p_out, non_members.classes),
        },
        train_accuracy: accuracy(&p_in, &members.labels, members.classes),
        test_accuracy: accuracy(&p_out, &non_members.labels, non_members.classes),
    }
}

/// Trains one model (target or shadow) with checkpoints and evaluates it at each of `epochs`.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate(
    ctx: &RunContext,
    key: &str,
    spec: ClassifierSpec<'_>,
    members: &Images,
    non_members: &Images,
    epochs: &[usize],
    tick: impl FnMut(),
) -> Result<Evals, HarnessError> {
    let device = ctx.device.clone().autodiff();
    ctx.checkpoints.unit(key, || {
        let (_, evals) = train_checkpointed(
            ctx,
            key,
            spec,
            members.view(),
            &device,
            tick,
            |epoch, net, evals: &mut Evals| {
                if epochs.contains(&epoch) {
                    evals.push(evaluate(
                        epoch,
                        net,
                        spec.model,
                        members,
                        non_members,
                        &ctx.device,
                    ));
                }
                Ok(())
            },
        )?;
        Ok(evals)
    })
}

/// One (model, κ, epochs) result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Model label.
    pub model: String,
    /// κ of target and shadow.
    pub kappa: f64,
    /// Training epochs.
    pub epochs: usize,
    /// Attack on the target.
    pub attack: AttackMetrics,
    /// Target accuracy on its training split.
    pub target_train_accuracy: f64,
    /// Target accuracy on target-test (the utility).
    pub target_test_accuracy: f64,
}

/// Trains target and shadow of `model` at `kappa` under `train` and attacks the target at each
/// of `epochs`; `tag` keeps the checkpoints of different settings apart.
#[allow(clippy::too_many_arguments)]
pub fn attack_setting(
    ctx: &RunContext,
    tag: &str,
    model: &ImageModelConfig,
    train: &ClassifyConfig,
    kappa: f64,
    seed: u64,
    splits: &Splits,
    epochs: &[usize],
    mut tick: impl FnMut(),
) -> Result<Vec<Row>, HarnessError> {
    let label = model_label(model);
    let spec = |seed| ClassifierSpec {
        model,
        train,
        kappa,
        seed,
    };
    let key = format!("{label}-{tag}");
    let target = train_and_evaluate(
        ctx,
        &format!("{key}-target"),
        spec(seed),
        &splits.target_train,
        &splits.target_test,
        epochs,
        &mut tick,
    )?;
    let shadow = train_and_evaluate(
        ctx,
        &format!("{key}-shadow"),
        spec(seed + 1000),
        &splits.shadow_train,
        &splits.shadow_test,
        epochs,
        &mut tick,
    )?;
    epochs
        .iter()
        .map(|e| {
            let at = |evals: &Evals| {
                evals
                    .iter()
                    .find(|v| v.epochs == *e)
                    .cloned()
                    .ok_or_else(|| {
                        HarnessError::run(format!("{key}: no evaluation after {e} epochs"))
                    })
            };
            let (t, s) = (at(&target)?, at(&shadow)?);
            let metrics = attack(&s.features, &t.features)
                .map_err(|err| HarnessError::run(format!("{key} at {e} epochs: {err}")))?;
            Ok(Row {
                model: label.clone(),
                kappa,
                epochs: *e,
                attack: metrics,
                target_train_accuracy: t.train_accuracy,
                target_test_accuracy: t.test_accuracy,
            })
        })
        .collect()
}

/// Membership inference against masked training.
pub struct MembershipInference;

impl Experiment for MembershipInference {
    fn id(&self) -> &'static str {
        "membership-inference"
    }

    fn about(&self) -> &'static str {
        "Figs. 5–7: ML-Leaks membership-inference AUC vs κ and epochs, beside test accuracy"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/membership-inference.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        MembershipConfig::from_table(config).map(|_| ())
    }

    fn checkpoints(&self) -> bool {
        true
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let c = MembershipConfig::from_table(config)?;
        let splits = splits(&c.data)?;
        let per_model = c.train.steps_per_epoch(c.data.split_size) * c.train.epochs;
        let total = per_model * 2 * c.kappas.len() * c.models.len();
        let bar = ctx.progress(total as u64, "train");
        let mut rows = Vec::new();
        for model in &c.models {
            for &kappa in &c.kappas {
                let tag = format!("k{kappa}");
                let found = attack_setting(
                    ctx,
                    &tag,
                    model,
                    &c.train,
                    kappa,
                    c.seed,
                    &splits,
                    &c.epochs,
                    || bar.inc(1),
                )?;
                for r in &found {
                    eprintln!(
                        "{} κ = {} {} epochs: AUC {:.3}, test accuracy {:.3}",
                        r.model, r.kappa, r.epochs, r.attack.auc, r.target_test_accuracy
                    );
                }
                rows.extend(found);
            }
        }
        bar.finish_and_clear();
        write_outputs(&c, &rows, ctx)
    }
}

/// Writes `rows` as CSV and JSON, with one AUC-vs-epochs figure per model (a series per κ).
pub fn write_rows(rows: &[Row], ctx: &RunContext) -> Result<(), HarnessError> {
    let mut csv = Csv::new(&[
        "model",
        "kappa",
        "epochs",
        "auc",
        "attack_accuracy",
        "precision",
        "recall",
        "target_train_accuracy",
        "target_test_accuracy",
    ]);
    for r in rows {
        csv.row(&[
            r.model.clone(),
            r.kappa.to_string(),
            r.epochs.to_string(),
            r.attack.auc.to_string(),
            r.attack.accuracy.to_string(),
            r.attack.precision.to_string(),
            r.attack.recall.to_string(),
            r.target_train_accuracy.to_string(),
            r.target_test_accuracy.to_string(),
        ]);
    }
    ctx.write("attack.csv", csv.into_bytes())?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "wall_time_s": ctx.elapsed().as_secs_f64() }),
    )
}

fn write_outputs(c: &MembershipConfig, rows: &[Row], ctx: &RunContext) -> Result<(), HarnessError> {
    write_rows(rows, ctx)?;
    for model in &c.models {
        let label = model_label(model);
        let series = c
            .kappas
            .iter()
            .map(|&kappa| Series {
                label: format!("κ = {kappa}"),
                points: rows
                    .iter()
                    .filter(|r| r.model == label && r.kappa == kappa)
                    .map(|r| (r.epochs as f64, r.attack.auc))
                    .collect(),
                ..Series::default()
            })
            .collect();
        let plot = LinePlot {
            title: format!("{label} on {}: membership-inference AUC", c.data.dataset),
            x_label: "training epochs".into(),
            y_label: "attack ROC-AUC (0.5 = chance)".into(),
            series,
            legend_left: true,
            ..LinePlot::default()
        };
        ctx.plot(&plot, &format!("auc_{label}"))?;
    }
    print_table(rows);
    Ok(())
}

/// The AUC table with test accuracy beside each AUC.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<12} {:>6} {:>7}  {:>6} {:>8} {:>9} {:>7}  {:>9} {:>9}",
        "model",
        "kappa",
        "epochs",
        "AUC",
        "att.acc",
        "precision",
        "recall",
        "train acc",
        "test acc"
    );
    for r in rows {
        println!(
            "{:<12} {:>6} {:>7}  {:>6.3} {:>8.3} {:>9.3} {:>7.3}  {:>9.3} {:>9.3}",
            r.model,
            r.kappa,
            r.epochs,
            r.attack.auc,
            r.attack.accuracy,
            r.attack.precision,
            r.attack.recall,
            r.target_train_accuracy,
            r.target_test_accuracy
        );
    }
}
