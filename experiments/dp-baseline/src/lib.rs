//! `dp-baseline`: input masking against DP-SGD as defences against membership inference. The
//! MLP target (and its shadow) of `membership-inference` is trained with DP-SGD at several noise
//! multipliers σ (Poisson-sampled batches, per-sample clipping at C, Gaussian noise σ·C; ε at δ
//! from the PLD accountant, with the looser Rényi bound beside it) and under the input mask at several κ, on the same four splits; each trained target is
//! attacked, and every DP-SGD model is set beside the masked model of closest test accuracy.

use gaussmask_harness::InputError;
use gaussmask_harness::config::require;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit};
use gaussmask_images::membership::{
    Row, SplitsConfig, attack_setting, check_dp_cells, dp_epsilon, resolve_epochs, splits,
};
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_privacy::pld::ACCOUNTANT;
use gaussmask_train::classify::{ClassifyConfig, DpSgd};
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/dp-baseline.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpBaselineConfig {
    /// Seed of the targets (shadows: `seed + 1000`).
    #[serde(default)]
    pub seed: u64,
    /// Training lengths (epochs) at which the targets are attacked.
    pub epochs: Vec<usize>,
    /// The four splits, as in membership-inference.
    pub data: SplitsConfig,
    /// The target (an MLP, or a CNN without batch norm).
    pub model: ImageModelConfig,
    /// Training of both defences (`epochs` comes from the list above, `dp` from below).
    pub train: ClassifyConfig,
    /// DP-SGD clipping norm C.
    pub clip: f64,
    /// DP-SGD noise multipliers σ, one target per value.
    pub noise_multipliers: Vec<f64>,
    /// δ of the reported (ε, δ).
    pub delta: f64,
    /// Mask strengths κ of the masking defence, one target per value.
    pub kappas: gaussmask_nn::KappaGrid,
}

impl DpBaselineConfig {
    fn resolve(&mut self) -> Result<(), String> {
        require(
            self.data.split_size >= 2,
            "data.split_size",
            "≥ 2",
            self.data.split_size,
        )?;
        gaussmask_images::check_dataset(self.data.dataset, self.data.path.as_deref())?;
        self.model.validate([1, 28, 28])?;
        resolve_epochs(&mut self.epochs, &mut self.train)?;
        check_dp_cells(
            &self.noise_multipliers,
            true,
            self.clip,
            self.delta,
            &self.train,
            &self.model,
        )
    }
}

/// One attacked target of either defence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DefenceRow {
    /// "dp-sgd" or "mask".
    pub defence: String,
    /// σ (DP-SGD) or κ (mask).
    pub strength: f64,
    /// ε at δ from the PLD accountant (DP-SGD; infinite for the mask, which has no DP
    /// guarantee).
    pub epsilon: f64,
    /// The Rényi-DP bound on the same ε (integer and fractional orders; never below `epsilon`).
    pub epsilon_renyi: f64,
    /// The attack and accuracies.
    pub row: Row,
}

/// DP-SGD vs input masking against membership inference.
pub struct DpBaseline;

/// One unit of work: a target (and its shadow) under one defence.
#[derive(Clone, Copy, Debug)]
pub enum Defence {
    /// DP-SGD at noise multiplier σ.
    DpSgd(f64),
    /// The input mask at κ.
    Mask(f64),
}

impl Study for DpBaseline {
    type Config = DpBaselineConfig;
    type Unit = Defence;
    type Output = Vec<DefenceRow>;

    fn id(&self) -> &'static str {
        "dp-baseline"
    }

    fn about(&self) -> &'static str {
        "DP-SGD (RDP accountant) vs input masking: membership-inference AUC at matched accuracy"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/dp-baseline.toml")
    }

    fn validate(&self, config: &mut DpBaselineConfig) -> Result<(), InputError> {
        Ok(config.resolve()?)
    }

    fn units(&self, c: &DpBaselineConfig) -> Vec<Unit<Defence>> {
        let dp = c
            .noise_multipliers
            .iter()
            .map(|&sigma| Unit::new(format!("dp-s{sigma}"), Defence::DpSgd(sigma)));
        let mask = c.kappas.iter().map(|&kappa| {
            Unit::new(
                format!("k{}", gaussmask_nn::kappa_label(kappa)),
                Defence::Mask(kappa),
            )
        });
        dp.chain(mask).collect()
    }

    fn run_unit(
        &self,
        c: &DpBaselineConfig,
        unit: &Unit<Defence>,
        ctx: &RunContext,
    ) -> Result<Vec<DefenceRow>, HarnessError> {
        let splits = splits(&c.data)?;
        let per_epoch = c.train.steps_per_epoch(c.data.split_size);
        let bar = ctx.progress((per_epoch * c.train.epochs * 2) as u64, &unit.key);
        let mut train = c.train.clone();
        let kappa = match unit.spec {
            Defence::DpSgd(sigma) => {
                train.dp = Some(DpSgd {
                    clip: c.clip,
                    noise_multiplier: sigma,
                });
                0.0
            }
            Defence::Mask(kappa) => kappa,
        };
        let found = attack_setting(
            ctx,
            &unit.key,
            &c.model,
            &train,
            kappa,
            c.seed,
            &splits,
            &c.epochs,
            || bar.inc(1),
        )?;
        bar.finish_and_clear();
        let rows = found
            .into_iter()
            .map(|row| match unit.spec {
                Defence::DpSgd(sigma) => {
                    let (epsilon, epsilon_renyi) =
                        dp_epsilon(&c.train, c.data.split_size, sigma, row.epochs, c.delta);
                    eprintln!(
                        "DP-SGD σ = {sigma} {} epochs: ε = {epsilon:.2} ({ACCOUNTANT}; Rényi \
                         bound {epsilon_renyi:.2}), AUC {:.3}, test accuracy {:.3}",
                        row.epochs, row.attack.auc, row.target_test_accuracy
                    );
                    DefenceRow {
                        defence: "dp-sgd".into(),
                        strength: sigma,
                        epsilon,
                        epsilon_renyi,
                        row,
                    }
                }
                Defence::Mask(kappa) => {
                    eprintln!(
                        "mask κ = {kappa} {} epochs: AUC {:.3}, test accuracy {:.3}",
                        row.epochs, row.attack.auc, row.target_test_accuracy
                    );
                    DefenceRow {
                        defence: "mask".into(),
                        strength: kappa,
                        epsilon: f64::INFINITY,
                        epsilon_renyi: f64::INFINITY,
                        row,
                    }
                }
            })
            .collect();
        Ok(rows)
    }

    fn reduce(
        &self,
        c: &DpBaselineConfig,
        outputs: Vec<(Unit<Defence>, Vec<DefenceRow>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let rows: Vec<DefenceRow> = outputs.into_iter().flat_map(|(_, r)| r).collect();
        write_outputs(c, &rows, ctx)
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `defences.csv`.
#[derive(Serialize)]
struct CsvRow<'a> {
    defence: &'a str,
    strength: f64,
    epochs: usize,
    /// Empty for no guarantee (the mask, ε = ∞): a CSV holds no non-finite number.
    epsilon: Option<f64>,
    /// The Rényi bound on it (empty likewise).
    epsilon_renyi: Option<f64>,
    auc: f64,
    target_train_accuracy: f64,
    target_test_accuracy: f64,
}

/// Each DP-SGD target beside the masked target of closest test accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Match {
    /// σ and epochs of the DP-SGD target.
    pub sigma: f64,
    /// Its training epochs.
    pub dp_epochs: usize,
    /// Its ε.
    pub epsilon: f64,
    /// Its test accuracy.
    pub dp_accuracy: f64,
    /// Its attack AUC.
    pub dp_auc: f64,
    /// κ and epochs of the masked target of closest test accuracy.
    pub kappa: f64,
    /// Its training epochs.
    pub mask_epochs: usize,
    /// Its test accuracy.
    pub mask_accuracy: f64,
    /// Its attack AUC.
    pub mask_auc: f64,
}

/// Pairs every DP-SGD row with the mask row of closest target test accuracy.
pub fn matches(rows: &[DefenceRow]) -> Vec<Match> {
    let masks: Vec<&DefenceRow> = rows.iter().filter(|r| r.defence == "mask").collect();
    rows.iter()
        .filter(|r| r.defence == "dp-sgd")
        .filter_map(|dp| {
            let acc = dp.row.target_test_accuracy;
            let m = masks.iter().min_by(|a, b| {
                (a.row.target_test_accuracy - acc)
                    .abs()
                    .total_cmp(&(b.row.target_test_accuracy - acc).abs())
            })?;
            Some(Match {
                sigma: dp.strength,
                dp_epochs: dp.row.epochs,
                epsilon: dp.epsilon,
                dp_accuracy: acc,
                dp_auc: dp.row.attack.auc,
                kappa: m.strength,
                mask_epochs: m.row.epochs,
                mask_accuracy: m.row.target_test_accuracy,
                mask_auc: m.row.attack.auc,
            })
        })
        .collect()
}

fn write_outputs(
    c: &DpBaselineConfig,
    rows: &[DefenceRow],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let csv: Vec<CsvRow> = rows
        .iter()
        .map(|r| CsvRow {
            defence: &r.defence,
            strength: r.strength,
            epochs: r.row.epochs,
            epsilon: r.epsilon.is_finite().then_some(r.epsilon),
            epsilon_renyi: r.epsilon_renyi.is_finite().then_some(r.epsilon_renyi),
            auc: r.row.attack.auc,
            target_train_accuracy: r.row.target_train_accuracy,
            target_test_accuracy: r.row.target_test_accuracy,
        })
        .collect();
    ctx.write_csv("defences.csv", &csv)?;
    let matched = matches(rows);
    ctx.write_json(
        "summary.json",
        &serde_json::json!({
            "rows": rows,
            "matched": matched,
            "delta": c.delta,
            "wall_time_s": ctx.elapsed().as_secs_f64(),
        }),
    )?;
    // One curve per defence setting, through its training lengths in order.
    let curve = |defence: &str, strength: f64, label: String, dashed: bool| Series {
        label,
        points: rows
            .iter()
            .filter(|r| r.defence == defence && r.strength == strength)
            .map(|r| (r.row.target_test_accuracy, r.row.attack.auc))
            .collect(),
        dashed,
        ..Series::default()
    };
    let mut series: Vec<Series> = c
        .noise_multipliers
        .iter()
        .map(|&s| curve("dp-sgd", s, format!("DP-SGD σ = {s}"), true))
        .collect();
    series.extend(
        c.kappas
            .iter()
            .map(|&k| curve("mask", k, format!("mask κ = {k}"), false)),
    );
    let epochs: Vec<String> = c.epochs.iter().map(usize::to_string).collect();
    let plot = LinePlot {
        title: format!(
            "Attack AUC against test accuracy, each curve through {} epochs",
            epochs.join(", ")
        ),
        x_label: "target test accuracy".into(),
        y_label: "membership-inference AUC".into(),
        series,
        legend_left: true,
        ..LinePlot::default()
    };
    ctx.plot(&plot, "auc_vs_accuracy")?;
    println!(
        "{:<7} {:>8} {:>7} {:>8}  {:>6} {:>9} {:>9}",
        "defence", "strength", "epochs", "ε", "AUC", "train acc", "test acc"
    );
    for r in rows {
        println!(
            "{:<7} {:>8} {:>7} {:>8.2}  {:>6.3} {:>9.3} {:>9.3}",
            r.defence,
            r.strength,
            r.row.epochs,
            r.epsilon,
            r.row.attack.auc,
            r.row.target_train_accuracy,
            r.row.target_test_accuracy
        );
    }
    println!(
        "\n{:>5} {:>6} {:>8} {:>8} {:>7}   {:>5} {:>6} {:>8} {:>7}",
        "σ", "epochs", "ε", "test acc", "AUC", "κ", "epochs", "test acc", "AUC"
    );
    for m in &matched {
        println!(
            "{:>5} {:>6} {:>8.2} {:>8.3} {:>7.3}   {:>5} {:>6} {:>8.3} {:>7.3}",
            m.sigma,
            m.dp_epochs,
            m.epsilon,
            m.dp_accuracy,
            m.dp_auc,
            m.kappa,
            m.mask_epochs,
            m.mask_accuracy,
            m.mask_auc
        );
    }
    Ok(())
}
