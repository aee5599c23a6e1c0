//! `membership-inference` (the paper's Figs. 5–7): does training under the input mask protect
//! a classifier's training set against membership inference? ML-Leaks adversary 1: four
//! disjoint equal splits (target-train, target-test, shadow-train, shadow-test); a shadow model
//! trained exactly like the target (mask included); an attack model (logistic regression on the
//! top-3 sorted posteriors) fitted on the shadow's members and non-members and scored on the
//! target's. The attack's ROC-AUC, accuracy, precision and recall are reported for each κ and
//! training length, beside the target's test accuracy, so the privacy–utility trade-off shows
//! in one table.
//!
//! Beside it, optionally (`[lira]`), the likelihood-ratio attack (LiRA, Carlini et al. 2022)
//! against the same architectures, κ and training lengths: N models per (architecture, κ),
//! each trained like the target on a seeded half of target-train ∪ target-test (so a member set
//! of the target's size), each in turn the target and the others its shadows, read at the
//! clean image and at masked copies of it (`gaussmask_images::lira`).

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit};
use gaussmask_images::membership::{Row, SplitsConfig, attack_setting, resolve_epochs, splits};
use gaussmask_images::model_label;
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_privacy::lira::member_halves;
use gaussmask_train::classify::ClassifyConfig;
use serde::{Deserialize, Serialize};

mod lira;
mod tables;

pub use lira::LiraEval;
use lira::{LiraModel, lira_model, read_lira, write_lira};

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
    /// LiRA beside ML-Leaks; absent: ML-Leaks only.
    #[serde(default)]
    pub lira: Option<LiraSection>,
}

/// The `[lira]` table: LiRA against some of the architectures, at every κ and training length.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiraSection {
    /// Models per (architecture, κ), each the target once and a shadow of the others.
    pub models: usize,
    /// Masked copies of each image the attacker queries at the training κ, besides the clean
    /// image.
    pub queries: usize,
    /// Labels of the attacked architectures (of `models`, e.g. "mlp-128").
    pub architectures: Vec<String>,
}

/// LiRA model m trains with seed `seed + LIRA_SEED + m`, apart from targets (`seed`) and
/// shadows (`seed + 1000`).
const LIRA_SEED: u64 = 2000;

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
        if let Some(lira) = &self.lira {
            require(
                lira.models >= 4,
                "lira.models",
                "≥ 4 (a target and shadows on both sides)",
                lira.models,
            )?;
            require_distinct("lira.architectures", &lira.architectures)?;
            for a in &lira.architectures {
                require(
                    labels.contains(a),
                    "lira.architectures",
                    &format!("labels of models ({})", labels.join(", ")),
                    a,
                )?;
            }
        }
        resolve_epochs(&mut self.epochs, &mut self.train)
    }

    /// Which of the LiRA pool (target-train ∪ target-test) model `m` trains on.
    fn lira_members(&self, m: usize) -> Vec<bool> {
        member_halves(2 * self.data.split_size, self.seed, m)
    }
}

/// Which attack a unit trains models for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    /// The ML-Leaks target and its shadow.
    MlLeaks,
    /// LiRA's model m.
    Lira(usize),
}

/// What a unit gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Found {
    /// ML-Leaks's reading at each training length.
    MlLeaks(Vec<Row>),
    /// What LiRA reads from one model at each training length.
    Lira(Vec<LiraEval>),
}

/// Membership inference against masked training.
pub struct MembershipInference;

impl Study for MembershipInference {
    type Config = MembershipConfig;
    /// (index into `models`, κ, ML-Leaks's target and shadow or LiRA's model m).
    type Unit = (usize, f64, Part);
    type Output = Found;

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

    fn units(&self, c: &MembershipConfig) -> Vec<Unit<(usize, f64, Part)>> {
        let mut out = Vec::new();
        for (m, model) in c.models.iter().enumerate() {
            let label = model_label(model);
            for &kappa in &c.kappas {
                let key = format!("{label}-k{}", gaussmask_nn::kappa_label(kappa));
                out.push(Unit::new(key.clone(), (m, kappa, Part::MlLeaks)));
            }
        }
        // LiRA's models after ML-Leaks's, so the paper's table comes first in a partial run.
        for (m, model) in c.models.iter().enumerate() {
            let label = model_label(model);
            if let Some(lira) = c.lira.as_ref().filter(|l| l.architectures.contains(&label)) {
                for &kappa in &c.kappas {
                    let key = format!("{label}-k{}", gaussmask_nn::kappa_label(kappa));
                    for i in 0..lira.models {
                        out.push(Unit::new(
                            format!("{key}-lira-m{i}"),
                            (m, kappa, Part::Lira(i)),
                        ));
                    }
                }
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &MembershipConfig,
        unit: &Unit<(usize, f64, Part)>,
        ctx: &RunContext,
    ) -> Result<Found, HarnessError> {
        let (m, kappa, part) = unit.spec;
        if let Part::Lira(i) = part {
            return lira_model(c, unit, m, kappa, i, ctx).map(Found::Lira);
        }
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
        Ok(Found::MlLeaks(found))
    }

    fn reduce(
        &self,
        c: &MembershipConfig,
        outputs: Vec<(Unit<(usize, f64, Part)>, Found)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut lira: Vec<LiraModel> = Vec::new();
        for (u, found) in outputs {
            match (found, u.spec) {
                (Found::MlLeaks(r), _) => rows.extend(r),
                (Found::Lira(e), (m, kappa, Part::Lira(i))) => lira.push(((m, kappa, i), e)),
                (Found::Lira(_), _) => {
                    return Err(HarnessError::run(format!(
                        "{}: a LiRA result kept for an ML-Leaks unit",
                        u.key
                    )));
                }
            }
        }
        write_outputs(c, &rows, ctx)?;
        if !lira.is_empty() {
            write_lira(c, &read_lira(c, &lira)?, ctx)?;
        }
        Ok(())
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
