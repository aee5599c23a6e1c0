//! The command line: `gaussmask list`, `gaussmask run <id> …`, and the single-experiment
//! binaries (`cargo run --release -p <id> -- …`) which take the same options.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use toml::Table;

use crate::backend::{Backend, Dtype, make_device};
use crate::checkpoint::{self, Checkpoints, SavedOptions};
use crate::config;
pub use crate::diagnostics::DiagnosticsRequest;
use crate::error::HarnessError;
use crate::options::{CommonOptions, RunOptions, check_resolved, resolve_config};
use crate::output::{LockError, RunDir, RunLock, results_target};
use crate::run::{Experiment, RunContext, RunSetup, find_experiment};

#[derive(Parser, Debug)]
#[command(
    name = "gaussmask",
    version,
    about = "Train neural networks under Gaussian input masking and reproduce the paper's figures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the experiments.
    List,
    /// Run an experiment.
    Run {
        /// Experiment id (see `gaussmask list`).
        id: String,
        #[command(flatten)]
        options: RunOptions,
    },
    /// Print an experiment's default config (or `train`'s).
    Config {
        /// Experiment id, or `train`.
        id: String,
    },
    /// List the compiled backends and whether each opens a device here.
    Backends,
    /// Merge the shard directories of one run (`gaussmask run <id> --shard I/N`) into its run
    /// directory: the same files as a single-process run.
    Merge {
        /// Experiment id.
        id: String,
        /// Run directory to create (must not exist); default `results/<id>/<UTC time>`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The shard directories, one per shard.
        #[arg(value_name = "SHARD_DIR", required = true)]
        shards: Vec<PathBuf>,
    },
    /// Recorded results: save a run as a record, write the README tables from the records,
    /// re-run records and compare.
    Records {
        #[command(subcommand)]
        action: crate::records_command::RecordsAction,
    },
    /// Write (and with --submit, submit) a Slurm job array that runs an experiment in shards,
    /// and a merge job that waits for it.
    Slurm {
        /// Experiment id.
        id: String,
        #[command(flatten)]
        options: crate::slurm::SlurmOptions,
    },
}

/// A subcommand beside the experiments (e.g. `eval-loss`), supplied by the binary on top.
pub trait Tool: Sync {
    /// The subcommand: its name, help and arguments.
    fn command(&self) -> clap::Command;
    /// Runs it on its parsed arguments; errors are printed as one line with exit code 2.
    fn run(&self, matches: &ArgMatches) -> Result<(), HarnessError>;
    /// Its default config, printed by `gaussmask config <name>`, if it reads one.
    fn default_config(&self) -> Option<&'static str> {
        None
    }
}

#[derive(Parser, Debug)]
struct Single {
    #[command(flatten)]
    options: RunOptions,
}

/// Entry point of the `gaussmask` binary: the experiments behind `run`, and `tools` as further
/// subcommands.
pub fn main(experiments: &[&dyn Experiment], tools: &[&dyn Tool]) -> ExitCode {
    quiet_panics();
    let command = tools
        .iter()
        .fold(Cli::command(), |c, tool| c.subcommand(tool.command()));
    let matches = match command.try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_exit(e),
    };
    if let Some((name, sub)) = matches.subcommand()
        && let Some(tool) = tools.iter().find(|t| t.command().get_name() == name)
    {
        return finish(tool.run(sub));
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    let result = match cli.command {
        Command::List => {
            for e in experiments {
                println!("{:<22} {}", e.id(), e.about());
            }
            Ok(())
        }
        Command::Config { id } => match tools
            .iter()
            .find(|t| t.command().get_name() == id)
            .and_then(|t| t.default_config())
        {
            Some(text) => {
                print!("{text}");
                Ok(())
            }
            None => find_experiment(experiments, &id).map(|e| print!("{}", e.default_config())),
        },
        Command::Backends => {
            for b in Backend::compiled() {
                match b.device() {
                    Ok(d) => println!("{b:<8} ok      {d:?}"),
                    Err(e) => println!("{b:<8} error   {e}"),
                }
            }
            Ok(())
        }
        Command::Run { id, options } => {
            find_experiment(experiments, &id).and_then(|e| run(e, &options))
        }
        Command::Merge { id, out, shards } => {
            find_experiment(experiments, &id).and_then(|e| crate::shards::merge(e, out, &shards))
        }
        Command::Records { action } => crate::records_command::run(action, experiments),
        Command::Slurm { id, options } => {
            find_experiment(experiments, &id).and_then(|e| crate::slurm::slurm(e, &options))
        }
    };
    finish(result)
}

/// Entry point of a single-experiment binary.
pub fn main_single(experiment: &dyn Experiment) -> ExitCode {
    quiet_panics();
    let single = match Single::try_parse() {
        Ok(s) => s,
        Err(e) => return clap_exit(e),
    };
    finish(run(experiment, &single.options))
}

fn finish(result: Result<(), HarnessError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code())
        }
    }
}

fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // One line: the message and any list under it (e.g. the missing arguments), not the usage.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = message.join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    eprintln!("error: {first} (see --help)");
    ExitCode::from(2)
}

/// Panics are bugs: report one line instead of a backtrace. A closed stdout (`gaussmask … | head`)
/// is not a bug: leave quietly with the shell's code for SIGPIPE, as other command-line tools do.
fn quiet_panics() {
    let verbose = std::env::var_os("RUST_BACKTRACE").is_some();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        if verbose {
            return default_hook(info);
        }
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{at} (set RUST_BACKTRACE=1 for details)",
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }));
}

/// Refuses the options a resumed run takes from its checkpoint instead of the command line.
fn check_resume_flags(options: &RunOptions) -> Result<(), HarnessError> {
    if options.common.config.is_some()
        || options.smoke
        || !options.common.set.is_empty()
        || options.common.seed.is_some()
        || options.common.out.is_some()
        || options.shard.is_some()
        || options.diagnostics.is_some()
        || options.save_weights
    {
        return Err(HarnessError::input(
            "--resume continues a run with its own config and options: drop --config, --smoke, \
             --set, --seed, --shard, --out, --diagnostics and --save-weights",
        ));
    }
    Ok(())
}

/// The config and options of the interrupted run at `target`, from its checkpoint folder
/// (read under the target's lock).
fn resume_options(
    experiment: &dyn Experiment,
    options: &RunOptions,
    target: &Path,
) -> Result<(Table, RunOptions), HarnessError> {
    if target.exists() {
        return Err(HarnessError::input(format!(
            "--resume {}: that run is already complete",
            target.display()
        )));
    }
    let folder = checkpoint::folder_for(target);
    let read = |name: &str| {
        std::fs::read_to_string(folder.join(name)).map_err(|_| {
            HarnessError::input(format!(
                "--resume {}: no checkpoint there ({} has no {name})",
                target.display(),
                folder.display()
            ))
        })
    };
    let saved: SavedOptions = serde_json::from_str(&read("options.json")?).map_err(|e| {
        HarnessError::input(format!("{}: {e}", folder.join("options.json").display()))
    })?;
    if saved.experiment != experiment.id() {
        return Err(HarnessError::input(format!(
            "--resume {}: that is a run of '{}', not '{}'",
            target.display(),
            saved.experiment,
            experiment.id()
        )));
    }
    let table = config::parse_text(
        &read("config.toml")?,
        &folder.join("config.toml").display().to_string(),
    )?;
    let parse_enum = |field: &str, value: &str| {
        HarnessError::input(format!(
            "{}: unknown {field} '{value}'",
            folder.join("options.json").display()
        ))
    };
    let resumed = RunOptions {
        common: CommonOptions {
            backend: Backend::from_str(&saved.backend, true)
                .map_err(|_| parse_enum("backend", &saved.backend))?,
            dtype: Dtype::from_str(&saved.dtype, true)
                .map_err(|_| parse_enum("dtype", &saved.dtype))?,
            out: Some(target.to_path_buf()),
            ..options.common.clone()
        },
        smoke: saved.smoke,
        save_weights: saved.save_weights,
        shard: saved.shard,
        diagnostics: saved.diagnostics,
    };
    // The same checks as the run it continues passed (the saved files may have been edited).
    check_resolved(experiment, &table, &resumed)?;
    Ok((table, resumed))
}

/// The target of a run, locked. A default target (a UTC time) another process holds is
/// passed over for the next suffix; an explicit one is refused naming the owner.
fn lock_target(
    experiment: &dyn Experiment,
    options: &RunOptions,
) -> Result<(PathBuf, RunLock), HarnessError> {
    if let Some(target) = options
        .common
        .resume
        .as_ref()
        .or(options.common.out.as_ref())
    {
        return Ok((target.clone(), RunLock::acquire(target)?));
    }
    let first = results_target(experiment.id());
    for k in 0..1000 {
        let target = match k {
            0 => first.clone(),
            k => first.with_file_name(format!(
                "{}-{k}",
                first.file_name().unwrap_or_default().to_string_lossy()
            )),
        };
        if target.exists() {
            continue;
        }
        match RunLock::acquire(&target) {
            Ok(lock) => return Ok((target, lock)),
            Err(LockError::Busy(..)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(HarnessError::input(format!(
        "no free run directory beside {}",
        first.display()
    )))
}

/// Runs `experiment`: validates everything first, then takes the target's lock, then writes
/// the run directory atomically. A run that fails after finishing some of its work keeps its
/// checkpoint (the result is the only thing allowed to replace it) and says how to continue.
pub fn run(experiment: &dyn Experiment, options: &RunOptions) -> Result<(), HarnessError> {
    let fresh = match &options.common.resume {
        Some(_) => {
            check_resume_flags(options)?;
            None
        }
        None => Some(resolve_config(experiment, options)?),
    };
    let (target, lock) = lock_target(experiment, options)?;
    let (table, options) = match fresh {
        Some(table) => (table, options.clone()),
        None => resume_options(experiment, options, &target)?,
    };
    let options = &options;
    let device = make_device(options.common.backend, options.common.dtype)?;
    let folder = checkpoint::folder_for(&target);
    if options.common.resume.is_none() && folder.exists() && !target.exists() {
        // We hold the lock: no live process owns this checkpoint.
        return Err(HarnessError::input(format!(
            "{} holds the checkpoint of an interrupted run: continue it with --resume {}, or \
             delete that folder",
            folder.display(),
            target.display()
        )));
    }
    let dir = RunDir::create_locked(target.clone(), lock)?;
    let seed = config::seed_of(&table);
    let mut ctx = RunContext::new(RunSetup {
        device,
        backend: options.common.backend,
        dtype: options.common.dtype,
        smoke: options.smoke,
        save_weights: options.save_weights,
        diagnostics: options.diagnostics,
        checkpoints: Checkpoints::new(folder.clone(), options.common.checkpoint_every),
        dir,
        experiment: experiment.id(),
        command: experiment.command(),
        seed,
    });
    if experiment.checkpoints() {
        checkpoint::install_signal_handlers();
        let saved = SavedOptions {
            experiment: experiment.id().into(),
            backend: options.common.backend.to_string(),
            dtype: options.common.dtype.to_string(),
            smoke: options.smoke,
            save_weights: options.save_weights,
            shard: options.shard,
            diagnostics: options.diagnostics,
        };
        ctx.checkpoints.save(
            "config.toml",
            toml::to_string(&table).unwrap_or_default().as_bytes(),
        )?;
        ctx.checkpoints.save(
            "options.json",
            serde_json::to_string_pretty(&saved)
                .unwrap_or_default()
                .as_bytes(),
        )?;
    }
    ctx.write("config.toml", toml::to_string(&table).unwrap_or_default())?;
    eprintln!(
        "running {} on {} ({}){} → {}",
        experiment.id(),
        options.common.backend,
        options.common.dtype,
        if options.smoke { ", smoke" } else { "" },
        ctx.target().display()
    );
    let result = match options.shard {
        Some(shard) => crate::shards::run_shard(experiment, &table, shard, &ctx),
        None => experiment.run(&table, &mut ctx),
    };
    let command = ctx.command.clone();
    match result {
        // `finish` commits the run and only then removes the checkpoint.
        Ok(()) => ctx
            .finish()
            .map_err(|e| keep_or_drop_checkpoint(e, &folder, &target, &command)),
        Err(e) => {
            // Decided while the run still holds its lock and staging folder.
            let e = keep_or_drop_checkpoint(e, &folder, &target, &command);
            drop(ctx);
            Err(e)
        }
    }
}

/// After a failed run: an interrupted run's checkpoint is kept (its error says how to go on).
/// A run that would fail again as it is (diverged) loses it, as does one that finished nothing.
/// Otherwise (a failed write, a damaged checkpoint file) the finished work (units or training
/// states) is kept, and the way to continue appended.
fn keep_or_drop_checkpoint(
    e: HarnessError,
    folder: &Path,
    target: &Path,
    command: &str,
) -> HarnessError {
    if e.code() == HarnessError::INTERRUPTED {
        return e;
    }
    let kept = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .filter(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.ends_with(".done.ron") || name.ends_with(".state")
                })
                .count()
        })
        .unwrap_or(0);
    if kept == 0 || e.repeats() {
        let _ = std::fs::remove_dir_all(folder);
        return e;
    }
    e.with_hint(&format!(
        "the finished work ({kept} file{} in {}) is kept: once the cause is fixed, continue \
         with: {command} --resume {}",
        if kept == 1 { "" } else { "s" },
        folder.display(),
        target.display()
    ))
}
