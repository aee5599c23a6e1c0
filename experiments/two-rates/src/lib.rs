//! `two-rates` (Razborov, "Improved convergence guarantees for shallow neural networks"): both
//! layers trained, the output layer at lr_a = ρ·lr_W, on Gaussian inputs with random labels,
//! for widths from about n/d up to about n²/d. Does the training loss still go to zero over the
//! whole range, including when the weights move far from their initialization? With and without
//! input masking (κ = 0 and κ > 0 replicas of the same run).

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit, mean_std};
use gaussmask_sweep::{SweepConfig, train_runs};
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/two-rates.toml`): a trajectories config (its `model.width`
/// and `train.lr_output` are set per cell) plus the grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TwoRatesConfig {
    /// Output-layer rate ratios ρ = lr_a / lr_W.
    pub rhos: Vec<f64>,
    /// Widths m.
    pub widths: Vec<usize>,
    /// Everything else, as in trajectories (unknown keys are refused there).
    #[serde(flatten)]
    pub base: SweepConfig,
}

impl TwoRatesConfig {
    fn validate(&self) -> Result<(), String> {
        require(!self.rhos.is_empty(), "rhos", "a non-empty list", "[]")?;
        require_distinct("rhos", &self.rhos)?;
        require_distinct("widths", &self.widths)?;
        for r in &self.rhos {
            require(r.is_finite() && *r >= 0.0, "rhos", "finite and ≥ 0", r)?;
        }
        require(!self.widths.is_empty(), "widths", "a non-empty list", "[]")?;
        require(
            self.base.model.train_output,
            "model.train_output",
            "true (both layers are trained)",
            false,
        )?;
        for &m in &self.widths {
            for &rho in &self.rhos {
                self.cell(m, rho)?;
            }
        }
        Ok(())
    }

    fn cell(&self, m: usize, rho: f64) -> Result<SweepConfig, String> {
        let mut c = self.base.clone();
        c.model.width = m;
        c.train.lr_output = Some(rho * c.train.lr);
        c.resolve()?;
        Ok(c)
    }
}

/// One (width, ρ, κ) row, over seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Width m.
    pub m: usize,
    /// ρ = lr_a / lr_W.
    pub rho: f64,
    /// κ (0 = no input masking).
    pub kappa: f64,
    /// Final clean training loss ½Σ(f − y)² (mean, sd over seeds); NaN if the run diverged.
    pub final_loss: (f64, f64),
    /// Final loss over initial loss, mean over seeds.
    pub loss_ratio: f64,
    /// ‖W_T − W_0‖_F / ‖W_0‖_F, mean over seeds.
    pub movement_w: f64,
    /// ‖a_T − a_0‖ / ‖a_0‖, mean over seeds.
    pub movement_a: f64,
    /// Why the run stopped early, if it did.
    pub diverged: Option<String>,
}

/// Both layers trained at two rates.
pub struct TwoRates;

fn relative(now: &[f64], start: &[f64]) -> f64 {
    let moved: f64 = now.iter().zip(start).map(|(p, q)| (p - q).powi(2)).sum();
    let norm: f64 = start.iter().map(|q| q * q).sum();
    (moved / norm).sqrt()
}

impl Study for TwoRates {
    type Config = TwoRatesConfig;
    type Unit = (usize, f64);
    /// A row per κ, in config order.
    type Output = Timed<Vec<Row>>;

    fn id(&self) -> &'static str {
        "two-rates"
    }

    fn about(&self) -> &'static str {
        "Razborov: both layers trained at lr_a = ρ·lr_W, Gaussian inputs, random labels, widths n/d…n²/d"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/two-rates.toml")
    }

    fn validate(&self, config: &mut TwoRatesConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &TwoRatesConfig) -> Vec<Unit<(usize, f64)>> {
        let mut out = Vec::new();
        for &m in &c.widths {
            for &rho in &c.rhos {
                out.push(Unit::new(format!("m={m}_rho={rho}"), (m, rho)));
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &TwoRatesConfig,
        unit: &Unit<(usize, f64)>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<Row>>, HarnessError> {
        let (m, rho) = unit.spec;
        let started = std::time::Instant::now();
        let data = c.base.data.generate();
        let cfg = c.cell(m, rho).map_err(HarnessError::input)?;
        let mut rows = Vec::new();
        match train_runs(&cfg, &data, ctx) {
            // A rate too large for this width is a result, not a failure of the run.
            Err(e) if e.code() == 1 => {
                let why = e.message().to_string();
                rows.extend(cfg.kappas.iter().map(|&kappa| Row {
                    m,
                    rho,
                    kappa,
                    final_loss: (f64::NAN, f64::NAN),
                    loss_ratio: f64::NAN,
                    movement_w: f64::NAN,
                    movement_a: f64::NAN,
                    diverged: Some(why.clone()),
                }));
            }
            Err(e) => return Err(e),
            Ok(runs) => {
                let replicas = cfg.replicas();
                for (k, &kappa) in cfg.kappas.iter().enumerate() {
                    let range = k * cfg.seeds..(k + 1) * cfg.seeds;
                    let (mut finals, mut ratios, mut mw, mut ma) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for j in range {
                        let curve = &runs.curves[j];
                        let (w, a) = &runs.weights[j];
                        let (w0, a0) = cfg.model.initial_weights(replicas[j].seed);
                        let last = *curve.clean.last().expect("the last step is logged");
                        finals.push(last);
                        ratios.push(last / curve.clean[0]);
                        mw.push(relative(w, &w0));
                        ma.push(relative(a, &a0));
                    }
                    rows.push(Row {
                        m,
                        rho,
                        kappa,
                        final_loss: mean_std(&finals),
                        loss_ratio: mean_std(&ratios).0,
                        movement_w: mean_std(&mw).0,
                        movement_a: mean_std(&ma).0,
                        diverged: None,
                    });
                }
            }
        }
        Ok(Timed {
            value: rows,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn reduce(
        &self,
        c: &TwoRatesConfig,
        outputs: Vec<(Unit<(usize, f64)>, Timed<Vec<Row>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let rows: Vec<Row> = outputs.into_iter().flat_map(|(_, o)| o.value).collect();
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

/// One line of `two_rates.csv`.
#[derive(Serialize)]
struct CsvRow<'a> {
    m: usize,
    rho: f64,
    kappa: f64,
    final_loss: f64,
    final_loss_std: f64,
    loss_ratio: f64,
    movement_w: f64,
    movement_a: f64,
    diverged: &'a str,
}

fn write_outputs(
    c: &TwoRatesConfig,
    rows: &[Row],
    train_time_s: f64,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let csv: Vec<CsvRow> = rows
        .iter()
        .map(|r| CsvRow {
            m: r.m,
            rho: r.rho,
            kappa: r.kappa,
            final_loss: r.final_loss.0,
            final_loss_std: r.final_loss.1,
            loss_ratio: r.loss_ratio,
            movement_w: r.movement_w,
            movement_a: r.movement_a,
            diverged: r.diverged.as_deref().unwrap_or_default(),
        })
        .collect();
    ctx.write_csv("two_rates.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "train_time_s": train_time_s }),
    )?;
    // Per κ: final/initial loss against width, one line per ρ (diverged cells left out).
    for &kappa in &c.base.kappas {
        let series = c
            .rhos
            .iter()
            .map(|&rho| Series {
                label: format!("ρ = {rho}"),
                points: rows
                    .iter()
                    .filter(|r| r.rho == rho && r.kappa == kappa && r.diverged.is_none())
                    .map(|r| (r.m as f64, r.loss_ratio.max(1e-12)))
                    .collect(),
                band: None,
                dashed: false,
                color: None,
            })
            .collect();
        let plot = LinePlot {
            title: format!(
                "Both layers trained: final / initial training loss (κ = {kappa}, n = {}, d = {})",
                c.base.data.n, c.base.data.d
            ),
            x_label: "width m".into(),
            y_label: "final / initial clean loss".into(),
            log_y: true,
            log_x: true,
            series,
            legend_left: false,
        };
        ctx.plot(&plot, &format!("loss_ratio_kappa{kappa}"))?;
    }
    Ok(())
}

fn print_table(rows: &[Row], train_time_s: f64) {
    println!(
        "{:>6} {:>5} {:>5}  {:>21}  {:>10}  {:>10}  {:>10}",
        "m", "rho", "kappa", "final loss", "final/init", "move W", "move a"
    );
    for r in rows {
        if let Some(why) = &r.diverged {
            println!("{:>6} {:>5} {:>5}  diverged: {why}", r.m, r.rho, r.kappa);
            continue;
        }
        println!(
            "{:>6} {:>5} {:>5}  {:>10.3e} ± {:<8.1e}  {:>10.3e}  {:>10.3e}  {:>10.3e}",
            r.m,
            r.rho,
            r.kappa,
            r.final_loss.0,
            r.final_loss.1,
            r.loss_ratio,
            r.movement_w,
            r.movement_a
        );
    }
    println!("training time {train_time_s:.1} s");
}
