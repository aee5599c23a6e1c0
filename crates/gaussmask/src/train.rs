//! `gaussmask train`, `gaussmask predict` and `gaussmask audit`: masked training on a user's
//! own data, predictions of the saved models, and the membership privacy of that training
//! (see `gaussmask config train`, `gaussmask config audit`).

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, ValueEnum};
use gaussmask_harness::cli::{Tool, run};
use gaussmask_harness::options::{CommonOptions, RunOptions};
use gaussmask_harness::output::write_atomic;
use gaussmask_harness::{Backend, Dtype, Experiment, HarnessError, make_device};
use gaussmask_supervised::predict::{Predictor, is_npy, to_csv, to_npy};
use gaussmask_supervised::{Audit, Train};

/// `gaussmask train` as a subcommand.
pub struct TrainTool;

impl Tool for TrainTool {
    fn command(&self) -> clap::Command {
        CommonOptions::augment_args(clap::Command::new("train"))
            .about("Train masked models on your own data (CSV, .npy, IDX), one per κ")
    }

    fn run(&self, matches: &ArgMatches) -> Result<(), HarnessError> {
        let common = CommonOptions::from_arg_matches(matches)
            .map_err(|e| HarnessError::input(e.to_string().trim().to_string()))?;
        let options = RunOptions {
            common,
            ..RunOptions::default()
        };
        run(&Train, &options)
    }

    fn default_config(&self) -> Option<&'static str> {
        Some(Train.default_config())
    }
}

/// `gaussmask audit` as a subcommand: `train`'s options and `--shadows`.
pub struct AuditTool;

impl Tool for AuditTool {
    fn command(&self) -> clap::Command {
        CommonOptions::augment_args(clap::Command::new("audit"))
            .about(
                "Membership privacy of masked training on your own data: LiRA over shadow \
                 models, with gaussmask train's config",
            )
            .arg(
                clap::Arg::new("shadows")
                    .long("shadows")
                    .value_name("N")
                    .value_parser(clap::value_parser!(u64))
                    .help("Models per κ, each LiRA's target once (sets audit.shadows; default 16)"),
            )
    }

    fn run(&self, matches: &ArgMatches) -> Result<(), HarnessError> {
        let mut common = CommonOptions::from_arg_matches(matches)
            .map_err(|e| HarnessError::input(e.to_string().trim().to_string()))?;
        if let Some(n) = matches.get_one::<u64>("shadows") {
            if common.resume.is_some() {
                return Err(HarnessError::input(
                    "--resume continues a run with its own config and options: drop --shadows",
                ));
            }
            common.set.push(format!("audit.shadows={n}"));
        }
        let options = RunOptions {
            common,
            ..RunOptions::default()
        };
        run(&Audit, &options)
    }

    fn default_config(&self) -> Option<&'static str> {
        Some(Audit.default_config())
    }
}

/// Arguments of `gaussmask predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Run directory written by `gaussmask train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Inputs: a CSV file with the model's feature columns (any order; other columns ignored),
    /// or a `.npy` array of rows.
    #[arg(long, value_name = "FILE")]
    pub inputs: PathBuf,
    /// True targets of `.npy` inputs (a `.npy` of n values), to print the metric.
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Where to write the predictions (must not exist): `.npy` for an array, else CSV;
    /// default: CSV on stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The model trained with this κ (default: the best validation metric).
    #[arg(long, allow_negative_numbers = true)]
    pub kappa: Option<f64>,
    /// The model of this seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Float type (default: the training run's).
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
}

/// `gaussmask predict` as a subcommand.
pub struct PredictTool;

impl Tool for PredictTool {
    fn command(&self) -> clap::Command {
        PredictArgs::augment_args(clap::Command::new("predict"))
            .about("Predict with a model saved by `gaussmask train` (CSV or .npy in and out)")
    }

    fn run(&self, matches: &ArgMatches) -> Result<(), HarnessError> {
        let args = PredictArgs::from_arg_matches(matches)
            .map_err(|e| HarnessError::input(e.to_string().trim().to_string()))?;
        predict(&args)
    }
}

/// Runs `gaussmask predict`.
pub fn predict(args: &PredictArgs) -> Result<(), HarnessError> {
    if let Some(out) = &args.out
        && out.exists()
    {
        return Err(HarnessError::input(format!(
            "--out {}: the file exists; remove it or choose another name",
            out.display()
        )));
    }
    let manifest =
        gaussmask_supervised::saved::Manifest::read(&args.model).map_err(HarnessError::input)?;
    let dtype = match args.dtype {
        Some(d) => d,
        None => Dtype::from_str(&manifest.dtype, true).map_err(|_| {
            HarnessError::input(format!(
                "{}: unknown dtype '{}'",
                args.model.join("model.json").display(),
                manifest.dtype
            ))
        })?,
    };
    let device = make_device(args.backend, dtype)?;
    let predictor = Predictor::load(&args.model, args.kappa, args.seed, &device)
        .map_err(HarnessError::input)?;
    let inputs = predictor
        .read(&args.inputs, args.targets.as_deref())
        .map_err(HarnessError::input)?;
    let m = &predictor.manifest;
    let e = &predictor.entry;
    eprintln!(
        "model κ = {}, seed {} of {} (validation {} {}; {} model(s) in the run)",
        gaussmask_nn::kappa_label(e.kappa),
        e.seed,
        args.model.display(),
        m.metric,
        e.val_metric,
        m.models.len()
    );
    let largest = match dtype {
        Dtype::F32 => f64::from(f32::MAX),
        Dtype::F64 => f64::MAX,
    };
    let prediction = predictor
        .predict(&inputs, largest)
        .map_err(|e| HarnessError::input(format!("{}: {e}", args.inputs.display())))?;
    if let Some(truth) = &inputs.truth {
        eprintln!(
            "{} on {} ({} rows): {}",
            m.metric,
            args.inputs.display(),
            inputs.n,
            prediction.metric(truth, m.classes.len())
        );
    }
    match &args.out {
        Some(out) => {
            let bytes = if is_npy(out) {
                to_npy(m, &prediction)
            } else {
                to_csv(m, &prediction)
            };
            write_atomic(out, &bytes)?;
            eprintln!("predictions: {}", out.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&to_csv(m, &prediction))
                .map_err(|e| HarnessError::run(format!("cannot write to stdout: {e}")))?;
        }
    }
    Ok(())
}
