//! `membership-inference` (the paper's Figs. 5–7): does training under the input mask protect
//! a classifier's training set against membership inference? ML-Leaks adversary 1: four
//! disjoint equal splits (target-train, target-test, shadow-train, shadow-test); a shadow model
//! trained exactly like the target (mask included); an attack model (logistic regression on the
//! top-3 sorted posteriors) fitted on the shadow's members and non-members and scored on the
//! target's. The attack's ROC-AUC, accuracy, precision and recall are reported for each κ and
//! training length, beside the target's test accuracy, so the privacy–utility trade-off shows
//! in one table.

use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext};
use gaussmask_images::membership::{Row, SplitsConfig, attack_setting, resolve_epochs, splits};
use gaussmask_images::model_label;
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_train::classify::ClassifyConfig;
use serde::{Deserialize, Serialize};
use toml::Table;

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
        gaussmask_images::check_kappas(&self.kappas)?;
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
        gaussmask_images::check_dataset(self.data.dataset, self.data.path.as_deref())?;
        require(!self.models.is_empty(), "models", "a non-empty list", "[]")?;
        for m in &self.models {
            m.validate([1, 28, 28])?;
        }
        resolve_epochs(&mut self.epochs, &mut self.train)
    }
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
