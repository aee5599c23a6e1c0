//! `gaussmask eval-loss`: every term of the decomposition for weights and data given as `.npy`
//! files, printed as JSON, so any number can be checked against one's own NumPy code.

use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, FromArgMatches};
use gaussmask_data::npy::{self, Array};
use gaussmask_nn::tensor_io::from_f64;
use gaussmask_regularizer::{MonteCarlo, decompose, model_for_kappas};
use serde::Serialize;

use gaussmask_harness::cli::Tool;
use gaussmask_harness::{Backend, Dtype, HarnessError, make_device};

/// Arguments of `gaussmask eval-loss`.
#[derive(Args, Debug, Clone)]
pub struct EvalLossArgs {
    /// First-layer weights W, shape [m, d].
    #[arg(long, value_name = "W.npy")]
    pub weights: PathBuf,
    /// Output signs (or weights) a, shape [m].
    #[arg(long, value_name = "a.npy")]
    pub signs: PathBuf,
    /// Inputs X, shape [n, d].
    #[arg(long, value_name = "X.npy")]
    pub inputs: PathBuf,
    /// Targets y, shape [n].
    #[arg(long, value_name = "y.npy")]
    pub targets: PathBuf,
    /// Mask level κ ≥ 0.
    #[arg(long, allow_negative_numbers = true)]
    pub kappa: f64,
    /// Masks for the Monte-Carlo estimates (0: none).
    #[arg(long, default_value_t = 0)]
    pub mc_samples: usize,
    /// Seed of the Monte-Carlo masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per chunk of the exact expected loss.
    #[arg(long, default_value_t = 50)]
    pub sample_chunk: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Float type (f64 by default here: this is a verification tool).
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,
}

/// What `eval-loss` prints.
#[derive(Debug, Serialize)]
struct Report {
    convention: &'static str,
    n: usize,
    d: usize,
    m: usize,
    #[serde(flatten)]
    terms: gaussmask_regularizer::Decomposition,
}

fn load(path: &Path, what: &str, rank: usize) -> Result<Array, HarnessError> {
    let a = npy::read(path).map_err(HarnessError::input)?;
    if a.shape.len() != rank {
        return Err(HarnessError::input(format!(
            "{}: {what} must be a {rank}-D array, got shape {:?}",
            path.display(),
            a.shape
        )));
    }
    if let Some(v) = a.data.iter().find(|v| !v.is_finite()) {
        return Err(HarnessError::input(format!(
            "{}: {what} holds a non-finite value ({v})",
            path.display()
        )));
    }
    Ok(a)
}

/// Runs `eval-loss` and prints its JSON report.
pub fn eval_loss(args: &EvalLossArgs) -> Result<(), HarnessError> {
    gaussmask_nn::check_kappa("--kappa", args.kappa).map_err(HarnessError::input)?;
    if args.sample_chunk == 0 {
        return Err(HarnessError::input("--sample-chunk must be ≥ 1, got 0"));
    }
    let w = load(&args.weights, "W", 2)?;
    let a = load(&args.signs, "a", 1)?;
    let x = load(&args.inputs, "X", 2)?;
    let y = load(&args.targets, "y", 1)?;
    let (m, d) = (w.shape[0], w.shape[1]);
    let n = x.shape[0];
    let mismatch = |msg: String| Err(HarnessError::input(msg));
    if m == 0 || d == 0 || n == 0 {
        return mismatch(format!(
            "empty arrays: W is {:?}, X is {:?}",
            w.shape, x.shape
        ));
    }
    if a.shape[0] != m {
        return mismatch(format!(
            "{} has {} values but {} has m = {m} rows",
            args.signs.display(),
            a.shape[0],
            args.weights.display()
        ));
    }
    if x.shape[1] != d {
        return mismatch(format!(
            "{} has d = {} columns but {} has d = {d}",
            args.inputs.display(),
            x.shape[1],
            args.weights.display()
        ));
    }
    if y.shape[0] != n {
        return mismatch(format!(
            "{} has {} values but {} has n = {n} rows",
            args.targets.display(),
            y.shape[0],
            args.inputs.display()
        ));
    }
    let device = make_device(args.backend, args.dtype)?;
    let model = model_for_kappas(&w.data, &a.data, m, d, &[args.kappa], &device);
    let xt = from_f64(x.data, [1, n, d], &device);
    let yt = from_f64(y.data, [1, n], &device);
    let mc = MonteCarlo {
        samples: args.mc_samples,
        seed: args.seed,
    };
    let terms = decompose(&model, xt, yt, mc, args.sample_chunk, &device)
        .pop()
        .expect("one replica");
    // A term that overflowed would print as `null`: an error, never a silent exit 0.
    let t = &terms;
    let finite = [
        ("clean", t.clean),
        ("exact", t.exact),
        ("smoothed_sse", t.smoothed_sse),
        ("variance", t.variance),
        ("proxy", t.proxy),
        ("proxy_sse", t.proxy_sse),
        ("regularizer", t.regularizer),
        ("link", t.link),
    ]
    .into_iter()
    .chain(t.mc_masked.iter().map(|e| ("mc_masked", e.mean)))
    .chain(t.mc_linearized.iter().map(|e| ("mc_linearized", e.mean)));
    for (name, value) in finite {
        if !value.is_finite() {
            return Err(HarnessError::run(format!(
                "the term {name} is {value} in {} (the data or weights are too large for it)",
                args.dtype
            )));
        }
    }
    let report = Report {
        convention: "every loss is ½ Σ_i over the n samples; f(W, x) = (1/√m) Σ_r a_r ReLU(w_rᵀx)",
        n,
        d,
        m,
        terms,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report encodes")
    );
    Ok(())
}

/// `gaussmask eval-loss` as a subcommand of the command line.
pub struct EvalLoss;

impl Tool for EvalLoss {
    fn command(&self) -> clap::Command {
        EvalLossArgs::augment_args(clap::Command::new("eval-loss")).about(
            "Clean, exact, proxy and Monte-Carlo losses of weights and data given as .npy files (JSON)",
        )
    }

    fn run(&self, matches: &ArgMatches) -> Result<(), HarnessError> {
        let args = EvalLossArgs::from_arg_matches(matches)
            .map_err(|e| HarnessError::input(e.to_string().trim().to_string()))?;
        eval_loss(&args)
    }
}
