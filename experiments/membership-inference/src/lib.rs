//! `membership-inference` (the paper's Figs. 5–7): does training under the input mask protect
//! a classifier's training set against membership inference? ML-Leaks adversary 1: four
//! disjoint equal splits (target-train, target-test, shadow-train, shadow-test); a shadow model
//! trained exactly like the target (mask included); an attack model (logistic regression on the
//! top-3 sorted posteriors) fitted on the shadow's members and non-members and scored on the
//! target's. The attack's ROC-AUC, accuracy, precision and recall are reported for each κ and
//! training length, beside the target's test accuracy, so the privacy–utility trade-off shows
//! in one table.

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit};
use gaussmask_images::membership::{Row, SplitsConfig, attack_setting, resolve_epochs, splits};
use gaussmask_images::model_label;
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_train::classify::ClassifyConfig;
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/membership-inference.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipConfig {
    /// Seed of the target models; shadows use `seed + 1000`.
    #[serde(default)]
    pub seed: u64,
    /// Mask strengths.
    pub kappas: gaussmask_nn::KappaGrid,
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
    /// Checks the fields and sets `train.epochs` to the longest of `epochs`.
    pub fn resolve(&mut self) -> Result<(), String> {
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
        let labels: Vec<String> = self.models.iter().map(model_label).collect();
        require_distinct("models (their labels)", &labels)?;
        resolve_epochs(&mut self.epochs, &mut self.train)
    }
}

/// Membership inference against masked training.
pub struct MembershipInference;

impl Study for MembershipInference {
    type Config = MembershipConfig;
    /// (index into `models`, κ): a target and its shadow.
    type Unit = (usize, f64);
    type Output = Vec<Row>;

    fn id(&self) -> &'static str {
        "membership-inference"
    }

    fn about(&self) -> &'static str {
        "Figs. 5–7: ML-Leaks membership-inference AUC vs κ and epochs, beside test accuracy"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/membership-inference.toml")
    }

    fn validate(&self, config: &mut MembershipConfig) -> Result<(), InputError> {
        Ok(config.resolve()?)
    }

    fn units(&self, c: &MembershipConfig) -> Vec<Unit<(usize, f64)>> {
        let mut out = Vec::new();
        for (m, model) in c.models.iter().enumerate() {
            for &kappa in &c.kappas {
                out.push(Unit::new(
                    format!(
                        "{}-k{}",
                        model_label(model),
                        gaussmask_nn::kappa_label(kappa)
                    ),
                    (m, kappa),
                ));
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &MembershipConfig,
        unit: &Unit<(usize, f64)>,
        ctx: &RunContext,
    ) -> Result<Vec<Row>, HarnessError> {
        let (m, kappa) = unit.spec;
        let splits = splits(&c.data)?;
        let per_model = c.train.steps_per_epoch(c.data.split_size) * c.train.epochs;
        let bar = ctx.progress(2 * per_model as u64, &unit.key);
        let found = attack_setting(
            ctx,
            &format!("k{kappa}"),
            &c.models[m],
            &c.train,
            kappa,
            c.seed,
            &splits,
            &c.epochs,
            || bar.inc(1),
        )?;
        bar.finish_and_clear();
        for r in &found {
            eprintln!(
                "{} κ = {} {} epochs: AUC {:.3}, test accuracy {:.3}",
                r.model, r.kappa, r.epochs, r.attack.auc, r.target_test_accuracy
            );
        }
        Ok(found)
    }

    fn reduce(
        &self,
        c: &MembershipConfig,
        outputs: Vec<(Unit<(usize, f64)>, Vec<Row>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let rows: Vec<Row> = outputs.into_iter().flat_map(|(_, r)| r).collect();
        write_outputs(c, &rows, ctx)
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `attack.csv`.
#[derive(Serialize)]
struct AttackRow<'a> {
    model: &'a str,
    kappa: f64,
    epochs: usize,
    auc: f64,
    attack_accuracy: f64,
    precision: f64,
    recall: f64,
    target_train_accuracy: f64,
    target_test_accuracy: f64,
}

/// Writes `rows` as CSV and JSON, with one AUC-vs-epochs figure per model (a series per κ).
pub fn write_rows(rows: &[Row], ctx: &RunContext) -> Result<(), HarnessError> {
    let csv: Vec<AttackRow> = rows
        .iter()
        .map(|r| AttackRow {
            model: &r.model,
            kappa: r.kappa,
            epochs: r.epochs,
            auc: r.attack.auc,
            attack_accuracy: r.attack.accuracy,
            precision: r.attack.precision,
            recall: r.attack.recall,
            target_train_accuracy: r.target_train_accuracy,
            target_test_accuracy: r.target_test_accuracy,
        })
        .collect();
    ctx.write_csv("attack.csv", &csv)?;
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
