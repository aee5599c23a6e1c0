//! `correlated-masks` (an open question of the paper): does it matter that the mask is fresh at
//! every step? The trajectories problem is trained with masks drawn fresh per sample and step
//! (the paper's setting), fixed per sample for the whole run, and shared by the whole batch at
//! each step; the floors of the clean training loss and the clean test error are compared over κ.

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit, mean_std};
use gaussmask_nn::MaskResample;
use gaussmask_sweep::{SweepConfig, check_tail_fraction, floor_over_runs, train_runs};
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/correlated-masks.toml`): a trajectories config plus the
/// resampling modes, the held-out sample count and the floor's tail.
/// (Unknown keys are refused by the flattened trajectories part.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorrelatedMasksConfig {
    /// When masks are drawn, one run per mode.
    pub modes: Vec<MaskResample>,
    /// Held-out samples (same teacher) for the clean test error.
    pub n_test: usize,
    /// Share of the logged steps the floor averages over.
    pub tail_fraction: f64,
    /// Everything else, as in trajectories (its `model.mask.resample` is set per mode).
    #[serde(flatten)]
    pub base: SweepConfig,
}

impl CorrelatedMasksConfig {
    fn validate(&mut self) -> Result<(), String> {
        require(!self.modes.is_empty(), "modes", "a non-empty list", "[]")?;
        require_distinct("modes", &self.modes)?;
        require(self.n_test >= 1, "n_test", "≥ 1", self.n_test)?;
        check_tail_fraction(self.tail_fraction)?;
        self.base.resolve()
    }
}

/// One (mode, κ) row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModeRow {
    /// Resampling mode.
    pub mode: MaskResample,
    /// κ.
    pub kappa: f64,
    /// Floor of the clean training loss ½Σ(f − y)², mean over seeds.
    pub floor: f64,
    /// Its standard deviation over seeds.
    pub floor_std: f64,
    /// Clean test MSE at the end, mean over seeds.
    pub test_mse: f64,
    /// Its standard deviation over seeds.
    pub test_mse_std: f64,
}

/// Fresh, fixed-per-sample and batch-shared masks compared.
pub struct CorrelatedMasks;

impl Study for CorrelatedMasks {
    type Config = CorrelatedMasksConfig;
    type Unit = MaskResample;
    type Output = Timed<Vec<ModeRow>>;

    fn id(&self) -> &'static str {
        "correlated-masks"
    }

    fn about(&self) -> &'static str {
        "Open question: fresh masks every step vs fixed per sample vs shared by the batch"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/correlated-masks.toml")
    }

    fn validate(&self, config: &mut CorrelatedMasksConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &CorrelatedMasksConfig) -> Vec<Unit<MaskResample>> {
        c.modes
            .iter()
            .map(|&mode| Unit::new(format!("masks={mode}"), mode))
            .collect()
    }

    fn run_unit(
        &self,
        c: &CorrelatedMasksConfig,
        unit: &Unit<MaskResample>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<ModeRow>>, HarnessError> {
        let mode = unit.spec;
        Timed::run(|| {
            let n = c.base.data.n;
            let mut all = c.base.data.clone();
            all.n = n + c.n_test;
            let (train, test) = all.generate().split(n);
            let mut cfg = c.base.clone();
            cfg.model.mask.resample = mode;
            let runs = train_runs(&cfg, &train, ctx)?;
            let mut rows = Vec::new();
            for (k, (&kappa, group)) in cfg
                .kappas
                .iter()
                .zip(runs.curves.chunks(cfg.seeds))
                .enumerate()
            {
                let tests: Vec<f64> = runs.weights[k * cfg.seeds..(k + 1) * cfg.seeds]
                    .iter()
                    .map(|(w, a)| test.mse(w, a))
                    .collect();
                let (floor, floor_std) =
                    floor_over_runs(group.iter().map(|c| c.clean.as_slice()), c.tail_fraction);
                let (test_mse, test_mse_std) = mean_std(&tests);
                rows.push(ModeRow {
                    mode,
                    kappa,
                    floor,
                    floor_std,
                    test_mse,
                    test_mse_std,
                });
            }
            Ok(rows)
        })
    }

    fn reduce(
        &self,
        c: &CorrelatedMasksConfig,
        outputs: Vec<(Unit<MaskResample>, Timed<Vec<ModeRow>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let rows: Vec<ModeRow> = outputs.into_iter().flat_map(|(_, o)| o.value).collect();
        write_outputs(c, &rows, train_time_s, ctx)?;
        print_table(&rows, train_time_s);
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

fn write_outputs(
    c: &CorrelatedMasksConfig,
    rows: &[ModeRow],
    train_time_s: f64,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    ctx.write_csv("correlated_masks.csv", rows)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "train_time_s": train_time_s }),
    )?;
    let figure = |pick: fn(&ModeRow) -> f64, name: &str, y_label: &str, title: &str| {
        let series = c
            .modes
            .iter()
            .map(|&mode| Series {
                label: mode.to_string(),
                points: rows
                    .iter()
                    .filter(|r| r.mode == mode)
                    .map(|r| (r.kappa, pick(r)))
                    .collect(),
                band: None,
                dashed: false,
                color: None,
            })
            .collect();
        let plot = LinePlot {
            title: title.into(),
            x_label: "κ".into(),
            y_label: y_label.into(),
            log_y: true,
            log_x: false,
            series,
            legend_left: true,
        };
        ctx.plot(&plot, name)
    };
    figure(
        |r| r.floor,
        "floor",
        "floor of the clean loss ½Σ(f − y)²",
        "Training floor by mask resampling",
    )?;
    figure(
        |r| r.test_mse,
        "test_mse",
        "clean test MSE",
        "Held-out error by mask resampling",
    )
}

fn print_table(rows: &[ModeRow], train_time_s: f64) {
    println!(
        "{:>20}  {:>6}  {:>21}  {:>21}",
        "masks", "kappa", "floor", "test MSE"
    );
    for r in rows {
        println!(
            "{:>20}  {:>6}  {:>10.4e} ± {:<8.1e}  {:>10.4e} ± {:<8.1e}",
            r.mode, r.kappa, r.floor, r.floor_std, r.test_mse, r.test_mse_std
        );
    }
    println!("training time {train_time_s:.1} s");
}
