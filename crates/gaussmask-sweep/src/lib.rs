//! Replica sweeps of the paper's two-layer network: a κ grid × seeds trained side by side (in
//! chunks of replicas), the logged curves, floors over runs and the per-κ summary. The
//! trajectories experiment and every experiment built on its sweep (floor-scaling, two-rates,
//! correlated-masks, depth, expected-objective, masked-neurons) use it.

use gaussmask_core::InputError;
use gaussmask_data::npy::Array;
use gaussmask_data::{Dataset, SyntheticConfig};
use gaussmask_harness::config::{f64_bytes, require, require_memory};
use gaussmask_harness::{Backend, HarnessError, RunContext, Timed, mean_std};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{KappaGrid, Replica, TwoLayerReluConfig, kappa_label};
use gaussmask_ntk::{Diagnostics, Tracker};
use gaussmask_train::{Engine, LogRecord, TrainConfig, train_two_layer};
use serde::{Deserialize, Serialize};

/// A sweep: the data, the network, the training and the κ × seed grid (the body of
/// `configs/trajectories.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Base seed: replica s of each κ uses seed + s for its weights and masks.
    #[serde(default)]
    pub seed: u64,
    /// Seeds per κ.
    pub seeds: usize,
    /// Mask levels κ.
    pub kappas: KappaGrid,
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

impl SweepConfig {
    /// Fills the defaults that depend on other fields and validates everything.
    pub fn resolve(&mut self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
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
        self.train.validate(self.data.n)?;
        require_memory(
            "the sweep",
            self.working_set_bytes(),
            "seeds × kappas, data.n, data.d, model.width, train.steps",
        )?;
        Ok(())
    }

    /// An estimate of what the sweep holds at once: per replica its weights and their
    /// optimizer state and gradient, its activations on the data and its logged curve; the data.
    pub fn working_set_bytes(&self) -> u128 {
        let replicas = self.kappas.len() as u128 * self.seeds as u128;
        let (n, d, m) = (
            self.data.n as u128,
            self.data.d as u128,
            self.model.width as u128,
        );
        let logged = self.train.steps as u128 / self.train.log_every.max(1) as u128 + 1;
        // Saturating: the sizes come straight from a config (up to 2⁶⁴ each).
        let per_replica = (4 * m)
            .saturating_mul(d)
            .saturating_add((3 * n).saturating_mul(m))
            .saturating_add(4 * logged);
        replicas
            .saturating_mul(per_replica)
            .saturating_mul(8)
            .saturating_add(f64_bytes(&[2, self.data.n, self.data.d]))
    }

    /// The same sweep restricted to one κ (a unit of work of the experiments built on it).
    ///
    /// # Errors
    /// κ fails [`gaussmask_nn::check_kappa`].
    pub fn with_kappa(&self, kappa: f64) -> Result<Self, InputError> {
        Ok(Self {
            kappas: KappaGrid::one("kappa", kappa)?,
            ..self.clone()
        })
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

/// Logged losses of one replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Logged steps.
    pub steps: Vec<usize>,
    /// Clean loss at each logged step.
    pub clean: Vec<f64>,
    /// Masked loss at each logged step.
    pub masked: Vec<f64>,
    /// NTK diagnostics rows (with `--diagnostics`; their `replica` is the chunk-local index).
    pub diagnostics: Vec<Diagnostics>,
}

/// Trains every replica on `config.data` (in chunks of `replica_chunk`) and returns their
/// curves, in [`SweepConfig::replicas`] order; saves the weights on `--save-weights`.
pub fn train_curves(config: &SweepConfig, ctx: &RunContext) -> Result<Vec<Curve>, HarnessError> {
    let runs = train_runs(config, &config.data.generate(), ctx)?;
    if ctx.save_weights {
        save_weights(&config.replicas(), &runs.weights, config, ctx)?;
    }
    Ok(runs.curves)
}

/// Curves and final weights of every replica of a run.
pub struct Runs {
    /// Logged losses, in [`SweepConfig::replicas`] order.
    pub curves: Vec<Curve>,
    /// Final (W `[m, d]`, a `[m]`) of each replica, row-major, same order.
    pub weights: Vec<(Vec<f64>, Vec<f64>)>,
}

/// The runs of one κ of a sweep: the unit of work of the experiments built on it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KappaRuns {
    /// One curve per seed, in seed order.
    pub curves: Vec<Curve>,
    /// Final (W, a) per seed, with `--save-weights` (else empty).
    pub weights: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Trains the seeds of κ = `kappa` of `config` on `data` (keeping the final weights when the
/// run saves them), timed.
pub fn train_kappa(
    config: &SweepConfig,
    kappa: f64,
    data: &Dataset,
    ctx: &RunContext,
) -> Result<Timed<KappaRuns>, HarnessError> {
    Timed::run(|| {
        let runs = train_runs(
            &config.with_kappa(kappa).map_err(HarnessError::input)?,
            data,
            ctx,
        )?;
        Ok(KappaRuns {
            curves: runs.curves,
            weights: if ctx.save_weights {
                runs.weights
            } else {
                Vec::new()
            },
        })
    })
}

/// Trains every replica on `data` (in chunks of `replica_chunk`).
pub fn train_runs(
    config: &SweepConfig,
    data: &Dataset,
    ctx: &RunContext,
) -> Result<Runs, HarnessError> {
    let replicas = config.replicas();
    let chunk = config.chunk_size(ctx.backend);
    let chunks = replicas.len().div_ceil(chunk);
    let bar = ctx.progress((chunks * config.train.steps) as u64, "training");
    let mut curves = vec![Curve::default(); replicas.len()];
    let mut weights = Vec::new();
    let mut train = config.train.clone();
    if let Some(req) = ctx.diagnostics {
        train.diagnostics_every = req.every;
    }
    let gram = ctx.diagnostics.is_some_and(|req| req.gram);
    for (c, group) in replicas.chunks(chunk).enumerate() {
        let offset = c * chunk;
        // Built from the first record's weights: W_0 of this chunk's replicas.
        let mut tracker: Option<Tracker> = None;
        let model = train_two_layer(
            &config.model,
            group,
            data,
            &train,
            &ctx.device,
            |rec: &LogRecord| {
                let mine = &mut curves[offset..offset + group.len()];
                for (j, curve) in mine.iter_mut().enumerate() {
                    curve.steps.push(rec.step);
                    curve.clean.push(rec.clean_loss[j]);
                    curve.masked.push(rec.masked_loss[j]);
                }
                if let Some(w) = &rec.weights {
                    let m = config.model.width;
                    let t = tracker
                        .get_or_insert_with(|| Tracker::new(data.x.clone(), data.d, m, w, gram));
                    for row in t.observe(rec.step, w) {
                        mine[row.replica].diagnostics.push(row);
                    }
                }
                bar.set_position((c * config.train.steps + rec.step) as u64);
            },
        )
        .map_err(|e| {
            let rep = match &e {
                gaussmask_train::TrainError::Diverged { replica, .. } => group.get(*replica),
                gaussmask_train::TrainError::Config(_)
                | gaussmask_train::TrainError::Finished { .. } => None,
            };
            let which = rep
                .map(|r| format!(" (κ = {}, seed {})", r.kappa, r.seed))
                .unwrap_or_default();
            HarnessError::run(format!("{e}{which}"))
        })?;
        let [r, m, d] = model.dims();
        let (w, a) = (to_f64(model.w.val()), to_f64(model.a.val()));
        for j in 0..r {
            weights.push((
                w[j * m * d..(j + 1) * m * d].to_vec(),
                a[j * m..(j + 1) * m].to_vec(),
            ));
        }
    }
    bar.finish_and_clear();
    Ok(Runs { curves, weights })
}

/// `W_kappa<κ>_seed<s>.npy` and `a_…npy` per replica, and all of them in `weights.safetensors`
/// (named `kappa=<κ>/seed=<s>/W` and `…/a`).
pub fn save_weights(
    replicas: &[Replica],
    weights: &[(Vec<f64>, Vec<f64>)],
    config: &SweepConfig,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let (m, d) = (config.model.width, config.data.d);
    let mut named = Vec::new();
    for (rep, (w, a)) in replicas.iter().zip(weights) {
        let w = Array {
            shape: vec![m, d],
            data: w.clone(),
        };
        let a = Array {
            shape: vec![m],
            data: a.clone(),
        };
        let tag = format!("kappa{}_seed{}", kappa_label(rep.kappa), rep.seed);
        ctx.write_npy(&format!("W_{tag}.npy"), &w)?;
        ctx.write_npy(&format!("a_{tag}.npy"), &a)?;
        let key = format!("kappa={}/seed={}", kappa_label(rep.kappa), rep.seed);
        named.push((format!("{key}/W"), w));
        named.push((format!("{key}/a"), a));
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

/// The floor of a group of runs: each run's mean over the last `tail_fraction` of its logged
/// losses, then the mean and standard deviation over the runs.
pub fn floor_over_runs<'a>(
    runs: impl IntoIterator<Item = &'a [f64]>,
    tail_fraction: f64,
) -> (f64, f64) {
    let floors: Vec<f64> = runs
        .into_iter()
        .map(|losses| tail_mean(losses, tail_fraction))
        .collect();
    mean_std(&floors)
}

/// Checks a `tail_fraction` config value: in (0, 1].
pub fn check_tail_fraction(value: f64) -> Result<(), String> {
    require(
        value > 0.0 && value <= 1.0,
        "tail_fraction",
        "in (0, 1]",
        value,
    )
}

/// Mean of the last `fraction` of `values` (at least one value).
pub fn tail_mean(values: &[f64], fraction: f64) -> f64 {
    let k = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len());
    values[values.len() - k..].iter().sum::<f64>() / k as f64
}

/// Computes the per-κ summary from the curves.
pub fn summarize(
    config: &SweepConfig,
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

/// λ₀ of a dataset: λ_min of the closed-form H∞ for unit-norm inputs, else of a Monte-Carlo H∞
/// (`samples` draws). Returns (λ₀, how it was computed).
pub fn lambda0(data: &gaussmask_data::Dataset, samples: usize) -> (f64, String) {
    match gaussmask_ntk::h_infinity(&data.x, data.d) {
        Ok(h) => (
            gaussmask_ntk::lambda_min(&h, data.n),
            "closed-form H∞ (unit-norm inputs)".into(),
        ),
        Err(_) => {
            let (h, _) = gaussmask_ntk::h_infinity_monte_carlo(&data.x, data.d, samples, 0);
            (
                gaussmask_ntk::lambda_min(&h, data.n),
                format!("Monte-Carlo H∞ ({samples} draws of w)"),
            )
        }
    }
}
