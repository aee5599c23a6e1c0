//! Workload (d) of `bench/run`: the exact expected loss E_c L (SPEC §3(A)) at fixed weights.
//!
//! `gaussmask-exact problem --out FILE` writes a problem (data, weights, signs) as JSON that
//! every contender reads; `gaussmask-exact eval --problem FILE --kappas …` times the
//! evaluation at each κ and prints one JSON line: seconds and the values, which `bench/run`
//! compares across contenders.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use gaussmask_data::{Dataset, SyntheticConfig};
use gaussmask_harness::{Backend, Dtype, make_device};
use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_smooth::expected::ExactLoss;
use gaussmask_smooth::tensor::kappa_tensor;
use serde::{Deserialize, Serialize};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

#[derive(Parser)]
#[command(about = "Workload (d) of bench/run: the exact expected loss at fixed weights")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a problem: the trajectories data and initial weights (N(0, 1) W, ±1 signs).
    Problem {
        #[arg(long, default_value_t = 500)]
        n: usize,
        #[arg(long, default_value_t = 20)]
        d: usize,
        #[arg(long, default_value_t = 100)]
        m: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate E_c L of a problem at each κ and print the time and the values.
    Eval {
        #[arg(long)]
        problem: PathBuf,
        /// Comma-separated κ values.
        #[arg(long, value_delimiter = ',', required = true)]
        kappas: Vec<f64>,
        #[arg(long, value_enum, default_value_t = Path::Host)]
        path: Path,
    },
}

/// Which implementation evaluates.
#[derive(Clone, Copy, ValueEnum)]
enum Path {
    /// `gaussmask_smooth::exact_loss`: f64, samples in parallel, each neuron pair once.
    Host,
    /// `gaussmask_smooth::expected::ExactLoss` on Burn's flex backend, f32 (the training path).
    Burn,
}

/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]`, `w`: `[m, d]`, `a`: `[m]`, all row-major.
#[derive(Serialize, Deserialize)]
struct Problem {
    n: usize,
    d: usize,
    m: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    a: Vec<f64>,
}

impl Problem {
    /// The trajectories data (`SyntheticConfig`: unit-sphere inputs, standardized teacher
    /// labels) and the two-layer network's initial weights, from `seed`.
    fn generate(n: usize, d: usize, m: usize, seed: u64) -> Self {
        let mut data = SyntheticConfig::new(n, d);
        data.seed = seed;
        let Dataset { x, y, .. } = data.generate();
        let (w, a) = TwoLayerReluConfig::new(d, m).initial_weights(seed);
        Self {
            n,
            d,
            m,
            x,
            y,
            w,
            a,
        }
    }

    fn check(&self) -> Result<(), String> {
        let sizes = [
            ("x", self.x.len(), self.n * self.d),
            ("y", self.y.len(), self.n),
            ("w", self.w.len(), self.m * self.d),
            ("a", self.a.len(), self.m),
        ];
        for (name, got, want) in sizes {
            if got != want {
                return Err(format!("field '{name}' has {got} entries, expected {want}"));
            }
        }
        Ok(())
    }
}

fn eval_burn(p: &Problem, kappa: f64) -> Result<f64, String> {
    let device = make_device(Backend::Flex, Dtype::F32).map_err(|e| e.to_string())?;
    let exact = ExactLoss::new(
        from_f64(p.w.clone(), [1, p.m, p.d], &device),
        from_f64(p.a.clone(), [1, p.m], &device),
        from_f64(p.x.clone(), [1, p.n, p.d], &device),
        from_f64(p.y.clone(), [1, p.n], &device),
        kappa_tensor(&[kappa], &device),
        // As the expected-objective experiment chunks it: ~50 samples × m² per pass.
        50,
    );
    Ok(to_f64(exact.total())[0])
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Problem { n, d, m, seed, out } => {
            if n == 0 || d == 0 || m == 0 {
                return Err("--n, --d and --m must be ≥ 1".into());
            }
            let text = serde_json::to_string(&Problem::generate(n, d, m, seed))
                .map_err(|e| e.to_string())?;
            let tmp = out.with_extension("json.tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &out))
                .map_err(|e| format!("{}: {e}", out.display()))
        }
        Command::Eval {
            problem,
            kappas,
            path,
        } => {
            let text = std::fs::read_to_string(&problem)
                .map_err(|e| format!("{}: {e}", problem.display()))?;
            let p: Problem =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", problem.display()))?;
            p.check()
                .map_err(|e| format!("{}: {e}", problem.display()))?;
            if let Some(k) = kappas.iter().find(|k| !(k.is_finite() && **k >= 0.0)) {
                return Err(format!("--kappas: {k} is not a finite κ ≥ 0"));
            }
            let start = Instant::now();
            let values = kappas
                .iter()
                .map(|&k| match path {
                    Path::Host => {
                        Ok(gaussmask_smooth::exact_loss(&p.w, &p.a, &p.x, &p.y, k).total())
                    }
                    Path::Burn => eval_burn(&p, k),
                })
                .collect::<Result<Vec<f64>, String>>()?;
            let seconds = start.elapsed().as_secs_f64();
            let (peer, version) = match path {
                Path::Host => ("gaussmask-host", "f64"),
                Path::Burn => ("gaussmask-burn", "flex f32"),
            };
            let line = serde_json::json!({
                "peer": peer, "version": version, "seconds": seconds, "values": values,
            });
            println!("{line}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gaussmask-exact: {e}");
            ExitCode::from(2)
        }
    }
}
