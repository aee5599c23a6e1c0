//! `masked-neurons` (Liao & Kyrillidis, "On the convergence of shallow neural network training
//! with randomly masked neurons", TMLR 2022): neuron masks Bernoulli(ξ), p subnetworks trained
//! τ_local steps each from the current weights, combined by per-neuron averaging. Dropout
//! (p = 1, τ_local = 1), multi-sample dropout (p > 1, τ_local = 1) and independent subnetwork
//! training (IST: a partition into p parts, ξ = 1/p) are points of the grid. Their claim: a
//! linear decrease to a floor that shrinks with p and grows with τ_local. With and without input
//! masking.

pub mod train;

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit};
use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_sweep::check_tail_fraction;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use train::{Net, Scheme, Setting};

mod tables;

/// The experiment's config (`configs/masked-neurons.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedNeuronsConfig {
    /// Base seed; seed s uses `seed + s` for its initial weights and masks.
    #[serde(default)]
    pub seed: u64,
    /// Seeds per setting.
    pub seeds: usize,
    /// Neuron-picking schemes.
    pub schemes: Vec<Scheme>,
    /// Keep probability ξ of the Bernoulli scheme.
    pub xi: f64,
    /// Subnetworks per round.
    pub ps: Vec<usize>,
    /// Local steps per subnetwork and round.
    pub tau_locals: Vec<usize>,
    /// Input-mask κ values (0 = none).
    pub kappas: gaussmask_nn::KappaGrid,
    /// Rounds.
    pub rounds: usize,
    /// Learning rate of the local steps.
    pub lr: f64,
    /// Share of the rounds the floor averages over.
    pub tail_fraction: f64,
    /// Data.
    pub data: SyntheticConfig,
    /// Model (its mask section is unused: κ comes from `kappas`).
    pub model: TwoLayerReluConfig,
}

impl MaskedNeuronsConfig {
    fn validate(&mut self) -> Result<(), String> {
        if self.model.input_dim == 0 {
            self.model.input_dim = self.data.d;
        }
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        let schemes: Vec<String> = self.schemes.iter().map(Scheme::to_string).collect();
        require_distinct("schemes", &schemes)?;
        require(
            !self.schemes.is_empty(),
            "schemes",
            "a non-empty list",
            "[]",
        )?;
        require(self.xi > 0.0 && self.xi <= 1.0, "xi", "in (0, 1]", self.xi)?;
        require(!self.ps.is_empty(), "ps", "a non-empty list", "[]")?;
        for &p in &self.ps {
            require(
                p >= 1 && p <= self.model.width,
                "ps",
                "in 1 ..= model.width",
                p,
            )?;
        }
        require(
            !self.tau_locals.is_empty(),
            "tau_locals",
            "a non-empty list",
            "[]",
        )?;
        for &t in &self.tau_locals {
            require(t >= 1, "tau_locals", "≥ 1", t)?;
        }
        require(self.rounds >= 1, "rounds", "≥ 1", self.rounds)?;
        require(
            self.lr.is_finite() && self.lr > 0.0,
            "lr",
            "finite and > 0",
            self.lr,
        )?;
        check_tail_fraction(self.tail_fraction)?;
        self.data.validate()?;
        require(
            self.model.input_dim == self.data.d,
            "model.input_dim",
            &format!("0 or data.d = {}", self.data.d),
            self.model.input_dim,
        )?;
        Ok(self.model.validate()?)
    }

    /// The settings of `scheme`, in output order.
    fn settings(&self, scheme: Scheme) -> Vec<Setting> {
        let mut out = Vec::new();
        for &p in &self.ps {
            for &tau_local in &self.tau_locals {
                for &kappa in &self.kappas {
                    out.push(Setting {
                        scheme,
                        p,
                        tau_local,
                        xi: self.xi,
                        kappa,
                        rounds: self.rounds,
                        lr: self.lr,
                    });
                }
            }
        }
        out
    }
}

/// Floor of one setting over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scheme.
    pub scheme: Scheme,
    /// Subnetworks per round.
    pub p: usize,
    /// Local steps.
    pub tau_local: usize,
    /// Keep probability (1/p for IST).
    pub xi: f64,
    /// Input-mask κ.
    pub kappa: f64,
    /// Floor of the clean loss (mean, sd over seeds).
    pub floor: (f64, f64),
    /// Rounds until the seed-mean loss is within 10% of the floor.
    pub rounds_to_floor: usize,
}

/// Training with randomly masked neurons.
pub struct MaskedNeurons;

impl Study for MaskedNeurons {
    type Config = MaskedNeuronsConfig;
    type Unit = Scheme;
    /// Loss curves of the scheme's settings × seeds, setting-major.
    type Output = Timed<Vec<Vec<f64>>>;

    fn id(&self) -> &'static str {
        "masked-neurons"
    }

    fn about(&self) -> &'static str {
        "Liao & Kyrillidis: p masked subnetworks × τ_local steps, per-neuron averaging (dropout, IST)"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/masked-neurons.toml")
    }

    fn validate(&self, config: &mut MaskedNeuronsConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    /// One unit per scheme: its settings and seeds run in parallel.
    fn units(&self, c: &MaskedNeuronsConfig) -> Vec<Unit<Scheme>> {
        c.schemes
            .iter()
            .map(|&scheme| Unit::new(format!("scheme={scheme}"), scheme))
            .collect()
    }

    fn run_unit(
        &self,
        c: &MaskedNeuronsConfig,
        unit: &Unit<Scheme>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<Vec<f64>>>, HarnessError> {
        Timed::run(|| {
            let data = c.data.generate();
            let settings = c.settings(unit.spec);
            let jobs: Vec<(usize, u64)> = (0..settings.len())
                .flat_map(|i| (0..c.seeds as u64).map(move |s| (i, c.seed + s)))
                .collect();
            let bar = ctx.progress(jobs.len() as u64, &format!("{} runs", unit.spec));
            let curves: Vec<Vec<f64>> = jobs
                .par_iter()
                .map(|&(i, seed)| {
                    let (w, a) = c.model.initial_weights(seed);
                    let mut net = Net { w, a };
                    let losses = train::train(&mut net, &data, &settings[i], seed);
                    bar.inc(1);
                    losses
                })
                .collect();
            bar.finish_and_clear();
            if curves.iter().flatten().any(|l| !l.is_finite()) {
                return Err(HarnessError::run(format!(
                    "a run of scheme {} diverged (non-finite loss): lower lr",
                    unit.spec
                )));
            }
            Ok(curves)
        })
    }

    fn reduce(
        &self,
        c: &MaskedNeuronsConfig,
        outputs: Vec<(Unit<Scheme>, Timed<Vec<Vec<f64>>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let settings: Vec<Setting> = c.schemes.iter().flat_map(|&s| c.settings(s)).collect();
        let curves: Vec<Vec<f64>> = outputs.into_iter().flat_map(|(_, o)| o.value).collect();
        let rows: Vec<Row> = settings
            .iter()
            .zip(curves.chunks(c.seeds))
            .map(|(s, group)| {
                let floor = gaussmask_sweep::floor_over_runs(
                    group.iter().map(Vec::as_slice),
                    c.tail_fraction,
                );
                let mean: Vec<f64> = (0..group[0].len())
                    .map(|k| group.iter().map(|l| l[k]).sum::<f64>() / group.len() as f64)
                    .collect();
                Row {
                    scheme: s.scheme,
                    p: s.p,
                    tau_local: s.tau_local,
                    xi: if s.scheme == Scheme::Ist {
                        1.0 / s.p as f64
                    } else {
                        s.xi
                    },
                    kappa: s.kappa,
                    floor,
                    rounds_to_floor: mean
                        .iter()
                        .position(|&l| l <= 1.1 * floor.0)
                        .unwrap_or(mean.len()),
                }
            })
            .collect();
        write_outputs(c, &settings, &curves, &rows, train_time_s, ctx)?;
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

/// One line of `masked_neurons.csv`.
#[derive(Serialize)]
struct CurveRow {
    scheme: String,
    p: usize,
    tau_local: usize,
    kappa: f64,
    seed: u64,
    round: usize,
    clean_loss: f64,
}

fn write_outputs(
    c: &MaskedNeuronsConfig,
    settings: &[Setting],
    curves: &[Vec<f64>],
    rows: &[Row],
    train_time_s: f64,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Vec::new();
    for (s, group) in settings.iter().zip(curves.chunks(c.seeds)) {
        for (k, losses) in group.iter().enumerate() {
            for (round, &clean_loss) in losses.iter().enumerate() {
                csv.push(CurveRow {
                    scheme: s.scheme.to_string(),
                    p: s.p,
                    tau_local: s.tau_local,
                    kappa: s.kappa,
                    seed: c.seed + k as u64,
                    round,
                    clean_loss,
                });
            }
        }
    }
    ctx.write_csv("masked_neurons.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "train_time_s": train_time_s }),
    )?;
    // Per (scheme, κ): floor against τ_local, one line per p.
    for &scheme in &c.schemes {
        for &kappa in &c.kappas {
            let series =
                c.ps.iter()
                    .map(|&p| Series {
                        label: format!("p = {p}"),
                        points: rows
                            .iter()
                            .filter(|r| r.scheme == scheme && r.kappa == kappa && r.p == p)
                            .map(|r| (r.tau_local as f64, r.floor.0))
                            .collect(),
                        band: None,
                        dashed: false,
                        color: None,
                    })
                    .collect();
            let plot = LinePlot {
                title: format!(
                    "Masked neurons ({}, ξ = {}): floor of the clean loss (κ = {kappa})",
                    scheme,
                    if scheme == Scheme::Ist {
                        "1/p".to_string()
                    } else {
                        c.xi.to_string()
                    }
                ),
                x_label: "local steps τ_local".into(),
                y_label: "floor of ½Σ(f − y)²".into(),
                log_y: true,
                log_x: true,
                series,
                legend_left: true,
            };
            ctx.plot(&plot, &format!("floor_{}_kappa{kappa}", scheme))?;
        }
    }
    Ok(())
}

fn print_table(rows: &[Row], train_time_s: f64) {
    println!(
        "{:>9} {:>3} {:>9} {:>6} {:>5}  {:>21}  {:>15}",
        "scheme", "p", "tau_local", "xi", "kappa", "floor", "rounds to floor"
    );
    for r in rows {
        println!(
            "{:>9} {:>3} {:>9} {:>6.3} {:>5}  {:>10.4e} ± {:<8.1e}  {:>15}",
            r.scheme, r.p, r.tau_local, r.xi, r.kappa, r.floor.0, r.floor.1, r.rounds_to_floor
        );
    }
    println!("training time {train_time_s:.1} s");
}
