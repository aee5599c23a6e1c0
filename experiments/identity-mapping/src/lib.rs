//! `identity-mapping` (Li & Yuan, "Convergence analysis of two-layer neural networks with ReLU
//! activation", NeurIPS 2017): SGD on f = ‖ReLU((I + W)ᵀx)‖₁ against the vanilla
//! f = ‖ReLU(Wᵀx)‖₁, both learning the teacher ‖ReLU((I + W*)ᵀx)‖₁ from fresh Gaussian samples.
//! Li & Yuan prove the residual network converges (the potential g(W) falls first, then W → W*);
//! does it, does the vanilla one do worse, and what does input masking of the student's inputs
//! change?

pub mod model;

use gaussmask_harness::InputError;
use gaussmask_harness::config::require;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit, mean_std};
use gaussmask_nn::MaskConfig;
use gaussmask_nn::rng::{Stream, tag};
use model::{Kind, effective, forward, loss_and_gradient, potential, spectral_norm};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/identity-mapping.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMappingConfig {
    /// Base seed; run r uses `seed + r`.
    #[serde(default)]
    pub seed: u64,
    /// Independent runs (teacher, initialization, samples).
    pub runs: usize,
    /// Input dimension d (W is d × d).
    pub d: usize,
    /// Fresh samples per SGD step.
    pub batch: usize,
    /// SGD step size.
    pub lr: f64,
    /// SGD steps.
    pub steps: usize,
    /// Steps between two logged points (the last step is always logged).
    pub log_every: usize,
    /// ‖W*‖₂ is set to this, and ‖W₀‖₂ scaled down to it if above.
    pub spectral_norm: f64,
    /// κ of the Gaussian mask on the student's inputs (0 = none).
    pub kappas: gaussmask_nn::KappaGrid,
    /// Held-out samples for the test loss.
    pub n_test: usize,
}

impl IdentityMappingConfig {
    fn validate(&self) -> Result<(), String> {
        require(self.runs >= 1, "runs", "≥ 1", self.runs)?;
        require(self.d >= 1, "d", "≥ 1", self.d)?;
        require(self.batch >= 1, "batch", "≥ 1", self.batch)?;
        require(
            self.lr.is_finite() && self.lr > 0.0,
            "lr",
            "finite and > 0",
            self.lr,
        )?;
        require(self.steps >= 1, "steps", "≥ 1", self.steps)?;
        require(self.log_every >= 1, "log_every", "≥ 1", self.log_every)?;
        require(
            self.spectral_norm.is_finite() && self.spectral_norm > 0.0,
            "spectral_norm",
            "finite and > 0",
            self.spectral_norm,
        )?;
        require(self.n_test >= 1, "n_test", "≥ 1", self.n_test)
    }
}

/// One logged point of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// Step.
    pub step: usize,
    /// ½ mean (f − y)² on the held-out samples (clean inputs).
    pub test_loss: f64,
    /// ‖B − (I + W*)‖_F: for the residual network, ‖W − W*‖_F.
    pub distance: f64,
    /// g(W).
    pub potential: f64,
}

/// One run's curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunCurve {
    /// Network.
    pub kind: Kind,
    /// Input-mask κ.
    pub kappa: f64,
    /// Run index.
    pub run: usize,
    /// Logged points.
    pub points: Vec<Point>,
}

/// A matrix with i.i.d. N(0, 1/d) entries scaled to spectral norm `target` (exactly, or only
/// when above it with `cap_only`).
fn scaled_gaussian(stream: &mut Stream, d: usize, target: f64, cap_only: bool) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    stream.fill_normal(&mut m);
    let s = 1.0 / (d as f64).sqrt();
    m.iter_mut().for_each(|v| *v *= s);
    let norm = spectral_norm(&m, d);
    if norm > 0.0 && (!cap_only || norm > target) {
        m.iter_mut().for_each(|v| *v *= target / norm);
    }
    m
}

/// Trains one network from the run's teacher and initialization.
pub fn train_one(c: &IdentityMappingConfig, kind: Kind, kappa: f64, run: usize) -> RunCurve {
    let d = c.d;
    let seed = c.seed + run as u64;
    let w_star = scaled_gaussian(
        &mut Stream::new(seed, tag::TEACHER),
        d,
        c.spectral_norm,
        false,
    );
    let mut w = scaled_gaussian(&mut Stream::new(seed, tag::INIT), d, c.spectral_norm, true);
    let teacher = effective(Kind::Residual, &w_star, d);
    let label = |x: &[f64], u: &mut [f64]| forward(&teacher, x, u);
    let mut u = vec![0.0; d];
    // Held-out set, and the training samples: the same for both networks of a run.
    let mut test_stream = Stream::new(seed, tag::DATA).substream(1);
    let mut x_test = vec![0.0; c.n_test * d];
    test_stream.fill_normal(&mut x_test);
    let y_test: Vec<f64> = x_test.chunks_exact(d).map(|x| label(x, &mut u)).collect();
    let mut data = Stream::new(seed, tag::DATA);
    let mask = MaskConfig::default().init(kappa, seed);
    let batch_rows: Vec<usize> = (0..c.batch).collect();
    let (mut x, mut y) = (vec![0.0; c.batch * d], vec![0.0; c.batch]);
    let mut grad = vec![0.0; d * d];
    let mut points = Vec::new();
    for step in 0..=c.steps {
        let b = effective(kind, &w, d);
        if step % c.log_every == 0 || step == c.steps {
            let test_loss = x_test
                .chunks_exact(d)
                .zip(&y_test)
                .map(|(xi, yi)| 0.5 * (forward(&b, xi, &mut u) - yi).powi(2))
                .sum::<f64>()
                / c.n_test as f64;
            let distance = b
                .iter()
                .zip(&teacher)
                .map(|(p, q)| (p - q).powi(2))
                .sum::<f64>()
                .sqrt();
            points.push(Point {
                step,
                test_loss,
                distance,
                potential: potential(&teacher, &b, d),
            });
        }
        if step == c.steps {
            break;
        }
        data.fill_normal(&mut x);
        for (yb, xb) in y.iter_mut().zip(x.chunks_exact(d)) {
            *yb = label(xb, &mut u);
        }
        if kappa > 0.0 {
            for (v, m) in x.iter_mut().zip(mask.sample(&batch_rows, d)) {
                *v *= m;
            }
        }
        loss_and_gradient(&b, &x, &y, &mut grad);
        for (wi, gi) in w.iter_mut().zip(&grad) {
            *wi -= c.lr * gi;
        }
    }
    RunCurve {
        kind,
        kappa,
        run,
        points,
    }
}

/// Final values of one (network, κ), over runs.
#[derive(Clone, Debug, Serialize)]
pub struct Final {
    /// Network.
    pub kind: Kind,
    /// Input-mask κ.
    pub kappa: f64,
    /// Final test loss (mean, sd over runs).
    pub test_loss: (f64, f64),
    /// Test loss at step 0 (mean over runs).
    pub initial_test_loss: f64,
    /// Final ‖B − (I + W*)‖_F (mean, sd).
    pub distance: (f64, f64),
    /// g at step 0 and at the end (means).
    pub potential: (f64, f64),
    /// Step at which the mean g is smallest (the end of its fall).
    pub potential_min_step: usize,
}

/// Residual vs vanilla two-layer networks of Li & Yuan.
pub struct IdentityMapping;

impl Study for IdentityMapping {
    type Config = IdentityMappingConfig;
    type Unit = Kind;
    /// The network's runs, κ-major.
    type Output = Timed<Vec<RunCurve>>;

    fn id(&self) -> &'static str {
        "identity-mapping"
    }

    fn about(&self) -> &'static str {
        "Li & Yuan: SGD on ‖ReLU((I + W)ᵀx)‖₁ vs vanilla ‖ReLU(Wᵀx)‖₁, with and without input masking"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/identity-mapping.toml")
    }

    fn validate(&self, config: &mut IdentityMappingConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    /// One unit per network: its κ and runs in parallel.
    fn units(&self, _: &IdentityMappingConfig) -> Vec<Unit<Kind>> {
        [Kind::Residual, Kind::Vanilla]
            .into_iter()
            .map(|kind| Unit::new(format!("network={}", name(kind)), kind))
            .collect()
    }

    fn run_unit(
        &self,
        c: &IdentityMappingConfig,
        unit: &Unit<Kind>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<RunCurve>>, HarnessError> {
        let kind = unit.spec;
        Timed::run(|| {
            let jobs: Vec<(f64, usize)> = c
                .kappas
                .iter()
                .flat_map(|&k| (0..c.runs).map(move |r| (k, r)))
                .collect();
            let bar = ctx.progress(jobs.len() as u64, &format!("{} runs", name(kind)));
            let curves: Vec<RunCurve> = jobs
                .par_iter()
                .map(|&(kappa, run)| {
                    let curve = train_one(c, kind, kappa, run);
                    bar.inc(1);
                    curve
                })
                .collect();
            bar.finish_and_clear();
            if let Some(bad) = curves
                .iter()
                .find(|r| r.points.iter().any(|p| !p.test_loss.is_finite()))
            {
                return Err(HarnessError::run(format!(
                    "the {:?} network diverged (κ = {}, run {}): lower lr",
                    bad.kind, bad.kappa, bad.run
                )));
            }
            Ok(curves)
        })
    }

    fn reduce(
        &self,
        c: &IdentityMappingConfig,
        outputs: Vec<(Unit<Kind>, Timed<Vec<RunCurve>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let curves: Vec<RunCurve> = outputs.into_iter().flat_map(|(_, o)| o.value).collect();
        let finals: Vec<Final> = curves.chunks(c.runs).map(summarize).collect();
        write_outputs(&curves, &finals, train_time_s, ctx)?;
        print_table(&finals, train_time_s);
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `identity_mapping.csv`.
#[derive(Serialize)]
struct CurveRow {
    network: &'static str,
    kappa: f64,
    run: usize,
    step: usize,
    test_loss: f64,
    distance: f64,
    potential: f64,
}

fn summarize(group: &[RunCurve]) -> Final {
    let last = |pick: fn(&Point) -> f64| {
        let v: Vec<f64> = group
            .iter()
            .map(|r| pick(r.points.last().expect("≥ 1 point")))
            .collect();
        mean_std(&v)
    };
    let mean_at = |i: usize, pick: fn(&Point) -> f64| {
        group.iter().map(|r| pick(&r.points[i])).sum::<f64>() / group.len() as f64
    };
    let len = group[0].points.len();
    let min_at = (0..len)
        .min_by(|&i, &j| mean_at(i, |p| p.potential).total_cmp(&mean_at(j, |p| p.potential)))
        .unwrap_or(0);
    Final {
        kind: group[0].kind,
        kappa: group[0].kappa,
        test_loss: last(|p| p.test_loss),
        initial_test_loss: mean_at(0, |p| p.test_loss),
        distance: last(|p| p.distance),
        potential: (
            mean_at(0, |p| p.potential),
            mean_at(len - 1, |p| p.potential),
        ),
        potential_min_step: group[0].points[min_at].step,
    }
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Residual => "residual",
        Kind::Vanilla => "vanilla",
    }
}

fn write_outputs(
    curves: &[RunCurve],
    finals: &[Final],
    train_time_s: f64,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Vec::new();
    for r in curves {
        for p in &r.points {
            csv.push(CurveRow {
                network: name(r.kind),
                kappa: r.kappa,
                run: r.run,
                step: p.step,
                test_loss: p.test_loss,
                distance: p.distance,
                potential: p.potential,
            });
        }
    }
    ctx.write_csv("identity_mapping.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "finals": finals, "train_time_s": train_time_s }),
    )?;
    let runs = curves.iter().filter(|r| r.run == 0).count().max(1);
    let per_group = curves.len() / runs;
    let figure = |pick: fn(&Point) -> f64, file: &str, y_label: &str, log_y: bool| {
        let series = curves
            .chunks(per_group)
            .map(|group| {
                let len = group[0].points.len();
                let points = (0..len)
                    .map(|i| {
                        let mean = group.iter().map(|r| pick(&r.points[i])).sum::<f64>()
                            / group.len() as f64;
                        (group[0].points[i].step as f64, mean)
                    })
                    .collect();
                Series {
                    label: format!("{} κ = {}", name(group[0].kind), group[0].kappa),
                    points,
                    band: None,
                    dashed: group[0].kind == Kind::Vanilla,
                    color: None,
                }
            })
            .collect();
        let plot = LinePlot {
            title: format!("Li & Yuan networks: {y_label} (mean over runs)"),
            x_label: "SGD step".into(),
            y_label: y_label.into(),
            log_y,
            log_x: false,
            series,
            legend_left: false,
        };
        ctx.plot(&plot, file)
    };
    figure(|p| p.test_loss, "test_loss", "test loss ½(f − y)²", true)?;
    figure(|p| p.potential, "potential", "potential g(W)", false)
}

fn print_table(finals: &[Final], train_time_s: f64) {
    println!(
        "{:>8} {:>5}  {:>10}  {:>21}  {:>21}  {:>19}  {:>8}",
        "network",
        "kappa",
        "test@0",
        "final test loss",
        "‖B − (I+W*)‖_F",
        "g: start → end",
        "g min at"
    );
    for f in finals {
        println!(
            "{:>8} {:>5}  {:>10.3e}  {:>10.3e} ± {:<8.1e}  {:>10.3e} ± {:<8.1e}  {:>8.3} → {:<8.3}  {:>8}",
            name(f.kind),
            f.kappa,
            f.initial_test_loss,
            f.test_loss.0,
            f.test_loss.1,
            f.distance.0,
            f.distance.1,
            f.potential.0,
            f.potential.1,
            f.potential_min_step
        );
    }
    println!("training time {train_time_s:.1} s");
}
