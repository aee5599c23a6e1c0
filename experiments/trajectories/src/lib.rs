//! Experiment `trajectories` (paper Fig. 3): clean training loss of masked full-batch GD for a
//! grid of κ, several seeds each, all replicas trained side by side.

use gaussmask_data::SyntheticConfig;
use gaussmask_data::npy::Array;
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Backend, Experiment, HarnessError, RunContext, mean_std};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{Replica, TwoLayerReluConfig};
use gaussmask_train::{Engine, LogRecord, TrainConfig, train_two_layer};
use serde::{Deserialize, Serialize};
use toml::Table;

/// Config of the experiment (`configs/trajectories.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrajectoriesConfig {
    /// Base seed: replica s of each κ uses seed + s for its weights and masks.
    #[serde(default)]
    pub seed: u64,
    /// Seeds per κ.
    pub seeds: usize,
    /// Mask levels κ.
    pub kappas: Vec<f64>,
    /// Replicas trained per batched computation; 0 picks the faster: all of them for the fused
    /// engines, else per backend (see `Backend::default_replica_chunk`). Results do not depend
    /// on it.
    #[serde(default)]
    pub replica_chunk: usize,
    /// The synthetic regression problem.
    pub data: SyntheticConfig,
    /// The network (input_dim 0 = the data's d).
    pub model: TwoLayerReluConfig,
    /// Optimizer and schedule.
    pub train: TrainConfig,
}

impl TrajectoriesConfig {
    /// Parses a resolved config table and checks every value.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut c: Self = parse(table)?;
        c.resolve().map_err(HarnessError::input)?;
        Ok(c)
    }

    fn resolve(&mut self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        require(!self.kappas.is_empty(), "kappas", "a non-empty list", "[]")?;
        for k in &self.kappas {
            require(k.is_finite() && *k >= 0.0, "kappas", "finite and ≥ 0", k)?;
        }
        self.data.validate()?;
        if self.model.input_dim == 0 {
            self.model.input_dim = self.data.d;
        }
        require(
            self.model.input_dim == self.data.d,
            "model.input_dim",
            &format!("0 or data.d = {}", self.data.d),
            self.model.input_dim,
        )?;
        self.model.validate()?;
        self.train.validate(self.data.n)
    }

    /// Replicas per batched computation on `backend`.
    pub fn chunk_size(&self, backend: Backend) -> usize {
        let total = self.kappas.len() * self.seeds;
        match self.replica_chunk {
            0 if self.train.resolved_engine(backend.is_gpu()) != Engine::Autodiff => total,
            0 => backend.default_replica_chunk().unwrap_or(total),
            c => c.min(total),
        }
    }

    /// The replicas, κ-major: (κ_0, seed), (κ_0, seed + 1), …
    pub fn replicas(&self) -> Vec<Replica> {
        self.kappas
            .iter()
            .flat_map(|&kappa| {
                (0..self.seeds as u64).map(move |s| Replica {
                    kappa,
                    seed: self.seed + s,
                })
            })
            .collect()
    }
}

/// Per-κ summary written to `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KappaSummary {
    /// Mask level.
    pub kappa: f64,
    /// Mean over seeds of the final clean loss.
    pub final_clean_mean: f64,
    /// Standard deviation over seeds of the final clean loss.
    pub final_clean_std: f64,
    /// Mean clean loss over the last 20% of steps (seed mean): the floor.
    pub floor: f64,
    /// floor − floor at κ = 0 (when κ = 0 is in the grid).
    pub excess_floor: Option<f64>,
    /// Plateau (mean of the last 10% of steps) of the seed-mean curve.
    pub plateau: f64,
    /// First logged step where the seed-mean curve is within 10% of its plateau.
    pub step_to_plateau: usize,
    /// −Δ ln L / Δk over the first 5% of steps (seed mean): the initial linear rate.
    pub initial_rate: f64,
}

/// The whole `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// One entry per κ, in config order.
    pub kappas: Vec<KappaSummary>,
    /// Steps of GD.
    pub steps: usize,
    /// Seeds per κ.
    pub seeds: usize,
    /// Replicas trained per batched computation.
    pub replica_chunk: usize,
    /// The training engine that ran (`auto` resolved).
    pub engine: Engine,
    /// Wall time of the training in seconds.
    pub train_time_s: f64,
}

/// The experiment.
pub struct Trajectories;

impl Experiment for Trajectories {
    fn id(&self) -> &'static str {
        "trajectories"
    }

    fn about(&self) -> &'static str {
        "Fig. 3: clean loss of masked GD over steps for a κ grid (the main job)"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/trajectories.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        TrajectoriesConfig::from_table(config).map(|_| ())
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let config = TrajectoriesConfig::from_table(config)?;
        let curves = train_curves(&config, ctx)?;
        let chunk = config.chunk_size(ctx.backend);
        let engine = config.train.resolved_engine(ctx.backend.is_gpu());
        let summary = summarize(&config, &curves, chunk, engine, ctx.elapsed().as_secs_f64());
        write_outputs(&config, &curves, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }
}

/// Logged losses of one replica.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curve {
    /// Logged steps.
    pub steps: Vec<usize>,
    /// Clean loss at each logged step.
    pub clean: Vec<f64>,
    /// Masked loss at each logged step.
    pub masked: Vec<f64>,
}

/// Trains every replica (in chunks of `replica_chunk`) and returns their curves, in
/// [`TrajectoriesConfig::replicas`] order.
pub fn train_curves(
    config: &TrajectoriesConfig,
    ctx: &RunContext,
) -> Result<Vec<Curve>, HarnessError> {
    let data = config.data.generate();
    let replicas = config.replicas();
    let chunk = config.chunk_size(ctx.backend);
    let chunks = replicas.len().div_ceil(chunk);
    let bar = ctx.progress((chunks * config.train.steps) as u64, "training");
    let mut curves = vec![Curve::default(); replicas.len()];
    let mut weights = Vec::new();
    for (c, group) in replicas.chunks(chunk).enumerate() {
        let offset = c * chunk;
        let model = train_two_layer(
            &config.model,
            group,
            &data,
            &config.train,
            &ctx.device,
            |rec: &LogRecord| {
                for (j, curve) in curves[offset..offset + group.len()].iter_mut().enumerate() {
                    curve.steps.push(rec.step);
                    curve.clean.push(rec.clean_loss[j]);
                    curve.masked.push(rec.masked_loss[j]);
                }
                bar.set_position((c * config.train.steps + rec.step) as u64);
            },
        )
        .map_err(|e| {
            let rep = group.get(match &e {
                gaussmask_train::TrainError::Diverged { replica, .. } => *replica,
            });
            let which = rep
                .map(|r| format!(" (κ = {}, seed {})", r.kappa, r.seed))
                .unwrap_or_default();
            HarnessError::run(format!("{e}{which}"))
        })?;
        if ctx.save_weights {
            let [r, m, d] = model.dims();
            let w = to_f64(model.w.val());
            let a = to_f64(model.a.val());
            for j in 0..r {
                weights.push((
                    group[j],
                    Array {
                        shape: vec![m, d],
                        data: w[j * m * d..(j + 1) * m * d].to_vec(),
                    },
                    Array {
                        shape: vec![m],
                        data: a[j * m..(j + 1) * m].to_vec(),
                    },
                ));
            }
        }
    }
    bar.finish_and_clear();
    if ctx.save_weights {
        save_weights(&weights, ctx)?;
    }
    Ok(curves)
}

/// `W_kappa<κ>_seed<s>.npy` and `a_…npy` per replica, and all of them in `weights.safetensors`
/// (named `kappa=<κ>/seed=<s>/W` and `…/a`).
fn save_weights(weights: &[(Replica, Array, Array)], ctx: &RunContext) -> Result<(), HarnessError> {
    let mut named = Vec::new();
    for (rep, w, a) in weights {
        let tag = format!("kappa{}_seed{}", rep.kappa, rep.seed);
        ctx.write_npy(&format!("W_{tag}.npy"), w)?;
        ctx.write_npy(&format!("a_{tag}.npy"), a)?;
        let key = format!("kappa={}/seed={}", rep.kappa, rep.seed);
        named.push((format!("{key}/W"), w.clone()));
        named.push((format!("{key}/a"), a.clone()));
    }
    ctx.write_safetensors("weights.safetensors", &named)
}

/// Mean over the seeds of one κ, step by step.
pub fn seed_mean(curves: &[Curve], pick: impl Fn(&Curve) -> &Vec<f64>) -> Vec<f64> {
    let len = pick(&curves[0]).len();
    (0..len)
        .map(|i| curves.iter().map(|c| pick(c)[i]).sum::<f64>() / curves.len() as f64)
        .collect()
}

fn tail_mean(values: &[f64], fraction: f64) -> f64 {
    let k = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len());
    values[values.len() - k..].iter().sum::<f64>() / k as f64
}

/// Computes the per-κ summary from the curves.
pub fn summarize(
    config: &TrajectoriesConfig,
    curves: &[Curve],
    replica_chunk: usize,
    engine: Engine,
    train_time_s: f64,
) -> Summary {
    let mut out: Vec<KappaSummary> = config
        .kappas
        .iter()
        .zip(curves.chunks(config.seeds))
        .map(|(&kappa, group)| {
            let finals: Vec<f64> = group.iter().map(|c| *c.clean.last().unwrap()).collect();
            let (final_clean_mean, final_clean_std) = mean_std(&finals);
            let mean = seed_mean(group, |c| &c.clean);
            let steps = &group[0].steps;
            let plateau = tail_mean(&mean, 0.1);
            let step_to_plateau = steps
                .iter()
                .zip(&mean)
                .find(|(_, l)| **l <= 1.1 * plateau)
                .map(|(s, _)| *s)
                .unwrap_or(*steps.last().unwrap());
            let early = steps
                .iter()
                .position(|&s| s >= config.train.steps / 20)
                .unwrap_or(steps.len() - 1)
                .max(1)
                .min(steps.len() - 1);
            let initial_rate =
                -(mean[early].ln() - mean[0].ln()) / (steps[early] - steps[0]).max(1) as f64;
            KappaSummary {
                kappa,
                final_clean_mean,
                final_clean_std,
                floor: tail_mean(&mean, 0.2),
                excess_floor: None,
                plateau,
                step_to_plateau,
                initial_rate,
            }
        })
        .collect();
    if let Some(clean) = out.iter().find(|s| s.kappa == 0.0).map(|s| s.floor) {
        for s in &mut out {
            s.excess_floor = Some(s.floor - clean);
        }
    }
    Summary {
        kappas: out,
        steps: config.train.steps,
        seeds: config.seeds,
        replica_chunk,
        engine,
        train_time_s,
    }
}

fn write_outputs(
    config: &TrajectoriesConfig,
    curves: &[Curve],
    summary: &Summary,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let n = config.data.n as f64;
    let mut csv = Csv::new(&[
        "kappa",
        "seed",
        "step",
        "clean_loss",
        "masked_loss",
        "clean_mse",
    ]);
    for (rep, curve) in config.replicas().iter().zip(curves) {
        for i in 0..curve.steps.len() {
            csv.row(&[
                rep.kappa.to_string(),
                rep.seed.to_string(),
                curve.steps[i].to_string(),
                curve.clean[i].to_string(),
                curve.masked[i].to_string(),
                (2.0 * curve.clean[i] / n).to_string(),
            ]);
        }
    }
    ctx.write("trajectories.csv", csv.into_bytes())?;
    ctx.write_json("summary.json", summary)?;

    let series = config
        .kappas
        .iter()
        .zip(curves.chunks(config.seeds))
        .map(|(&kappa, group)| {
            let steps = &group[0].steps;
            let mean = seed_mean(group, |c| &c.clean);
            let band = (0..steps.len())
                .map(|i| {
                    let vals = group.iter().map(|c| c.clean[i]);
                    (
                        vals.clone().fold(f64::INFINITY, f64::min),
                        vals.fold(f64::NEG_INFINITY, f64::max),
                    )
                })
                .collect();
            Series {
                label: format!("κ = {kappa}"),
                points: steps.iter().map(|&s| s as f64).zip(mean).collect(),
                band: (config.seeds > 1).then_some(band),
                dashed: false,
                color: None,
            }
        })
        .collect();
    let plot = LinePlot {
        title: format!(
            "Masked GD: clean training loss (n={}, d={}, m={}, lr={}, {} seeds)",
            config.data.n, config.data.d, config.model.width, config.train.lr, config.seeds
        ),
        x_label: "step".into(),
        y_label: "clean loss ½Σ(f − y)²".into(),
        log_y: true,
        log_x: false,
        series,
        legend_left: false,
    };
    ctx.plot(&plot, "trajectories")
}

/// Prints the per-κ table.
pub fn print_table(summary: &Summary) {
    println!(
        "{:>6}  {:>22}  {:>11}  {:>11}  {:>15}  {:>12}",
        "kappa", "final clean loss", "floor", "excess", "step to plateau", "initial rate"
    );
    for s in &summary.kappas {
        println!(
            "{:>6}  {:>11.4e} ± {:<8.2e}  {:>11.4e}  {:>11}  {:>15}  {:>12.3e}",
            s.kappa,
            s.final_clean_mean,
            s.final_clean_std,
            s.floor,
            s.excess_floor
                .map(|e| format!("{e:.3e}"))
                .unwrap_or_else(|| "-".into()),
            s.step_to_plateau,
            s.initial_rate
        );
    }
    println!(
        "training time {:.2} s (engine {})",
        summary.train_time_s, summary.engine
    );
}
