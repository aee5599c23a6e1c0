//! `gaussmask slurm <id> --shards N`: a run split over a Slurm job array, and a merge job that
//! waits for it.
//!
//! The command writes a sweep directory:
//!
//! ```text
//! DIR/config.toml   the resolved config every task runs
//! DIR/plan.json     experiment, shard count, units, executable, backend, submitted job ids
//! DIR/array.sh      the job array: task i runs `gaussmask run <id> --shard i/N`
//! DIR/merge.sh      the merge job: `gaussmask merge <id> --out DIR/result DIR/shards/*`
//! DIR/shards/       one shard directory per task
//! DIR/logs/         one log per task and the merge job's
//! DIR/result/       the merged run directory, once the merge job has run
//! ```
//!
//! With `--submit` it submits both (`sbatch --parsable`; the merge job with
//! `--dependency=afterok:<array>` and `--kill-on-invalid-dep=yes`, so a failed task cancels it
//! instead of leaving it pending). A task that was killed resumes from its checkpoint when
//! re-run; `--retry DIR` re-submits only the shards that did not finish, and a new merge job.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::options::{RunOptions, resolve_config};
use crate::output::{RunDir, write_atomic};
use crate::run::Experiment;

/// Options of `gaussmask slurm`.
#[derive(Args, Debug, Clone)]
pub struct SlurmOptions {
    /// Number of array tasks (shards).
    #[arg(long, value_name = "N", required_unless_present = "retry")]
    pub shards: Option<usize>,
    /// Slurm partition (`#SBATCH --partition`); default: the cluster's default.
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Time limit of each task and of the merge job (`#SBATCH --time`, e.g. `2:00:00`).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// CPUs per task (`#SBATCH --cpus-per-task`).
    #[arg(long, value_name = "C")]
    pub cpus: Option<u32>,
    /// Memory per task (`#SBATCH --mem`, e.g. `4G`).
    #[arg(long, value_name = "M")]
    pub mem: Option<String>,
    /// The run's options, as `gaussmask run` takes them (`--out` names the sweep directory;
    /// `--resume` and `--shard` are for the tasks, not here).
    #[command(flatten)]
    pub run: RunOptions,
    /// Submit the job array and the merge job with sbatch.
    #[arg(long)]
    pub submit: bool,
    /// Re-submit the shards of the sweep directory DIR that did not finish, and a merge job.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["shards", "config", "smoke", "set", "seed", "out", "backend", "dtype"]
    )]
    pub retry: Option<PathBuf>,
}

/// What `plan.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Experiment id.
    pub experiment: String,
    /// Number of shards (array tasks).
    pub shards: usize,
    /// Keys of the run's units, in order (unit k goes to shard k mod N).
    pub units: Vec<String>,
    /// The gaussmask executable the tasks run.
    pub executable: String,
    /// Backend of the tasks.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// `--checkpoint-every` of the tasks.
    pub checkpoint_every: usize,
    /// Job ids, in the order they were submitted (`array` or `merge`, and the id).
    #[serde(default)]
    pub jobs: Vec<(String, String)>,
}

/// `gaussmask slurm`.
pub(crate) fn slurm(
    experiment: &dyn Experiment,
    options: &SlurmOptions,
) -> Result<(), HarnessError> {
    match &options.retry {
        Some(dir) => retry(experiment, dir),
        None => prepare(experiment, options),
    }
}

fn absolute(path: &Path) -> Result<PathBuf, HarnessError> {
    std::path::absolute(path).map_err(|e| HarnessError::io("resolve", path, &e))
}

/// Quotes `text` for a POSIX shell.
fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:+,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn prepare(experiment: &dyn Experiment, options: &SlurmOptions) -> Result<(), HarnessError> {
    let shards = options.shards.unwrap_or(0);
    if shards == 0 {
        return Err(HarnessError::input("--shards must be ≥ 1, got 0"));
    }
    if options.run.common.resume.is_some() || options.run.shard.is_some() {
        return Err(HarnessError::input(
            "gaussmask slurm takes neither --resume nor --shard: each task gets its shard, and \
             a task that was killed resumes by itself (re-submit with --retry SWEEP_DIR)",
        ));
    }
    // Validated as a shard is: the options a shard refuses are refused here.
    let run = RunOptions {
        shard: Some(crate::selection::Shard {
            index: 0,
            count: shards,
        }),
        ..options.run.clone()
    };
    let table = resolve_config(experiment, &run)?;
    let units = experiment.unit_keys(&table)?.unwrap_or_default();
    let dir = absolute(
        &options
            .run
            .common
            .out
            .clone()
            .unwrap_or_else(|| crate::output::results_target(experiment.id())),
    )?;
    // Staged and moved into place like a run directory: a failure leaves no half sweep.
    let sweep = RunDir::create(dir.clone())?;
    let exe = std::env::current_exe()
        .map_err(|e| HarnessError::run(format!("cannot find the gaussmask executable: {e}")))?;
    let plan = Plan {
        experiment: experiment.id().into(),
        shards,
        units,
        executable: exe.display().to_string(),
        backend: options.run.common.backend.to_string(),
        dtype: options.run.common.dtype.to_string(),
        checkpoint_every: options.run.common.checkpoint_every,
        jobs: Vec::new(),
    };
    let write = |file: &str, text: &str| sweep.write(file, text.as_bytes()).map(|_| ());
    write(
        "config.toml",
        &toml::to_string(&table).map_err(|e| HarnessError::run(e.to_string()))?,
    )?;
    write("array.sh", &array_script(&plan, options, &dir))?;
    write("merge.sh", &merge_script(&plan, options, &dir))?;
    write_plan(&sweep.staged_path(""), &plan)?;
    for script in ["array.sh", "merge.sh"] {
        make_executable(&sweep.staged_path(script))?;
    }
    for sub in ["logs", "shards"] {
        let path = sweep.staged_path(sub);
        std::fs::create_dir(&path).map_err(|e| HarnessError::io("create", &path, &e))?;
    }
    sweep.commit()?;
    println!(
        "sweep: {} ({} units in {} shards)",
        dir.display(),
        plan.units.len(),
        shards
    );
    if options.submit {
        submit(&dir, plan, None)
    } else {
        println!(
            "submit with: gaussmask slurm {} --retry {} (submits every shard not finished, \
             and the merge job)",
            experiment.id(),
            dir.display()
        );
        Ok(())
    }
}

fn make_executable(path: &Path) -> Result<(), HarnessError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| HarnessError::io("chmod", path, &e))?;
    }
    Ok(())
}

fn write_plan(dir: &Path, plan: &Plan) -> Result<(), HarnessError> {
    let path = dir.join("plan.json");
    let text = serde_json::to_string_pretty(plan).map_err(|e| HarnessError::run(e.to_string()))?;
    write_atomic(&path, (text + "\n").as_bytes()).map(|_| ())
}

fn sbatch_header(options: &SlurmOptions, name: &str, log: &str) -> String {
    let mut text = format!(
        "#!/bin/bash\n#SBATCH --job-name={}\n#SBATCH --output={}\n",
        quote(name),
        quote(log)
    );
    if let Some(p) = &options.partition {
        text += &format!("#SBATCH --partition={}\n", quote(p));
    }
    if let Some(t) = &options.time {
        text += &format!("#SBATCH --time={}\n", quote(t));
    }
    if let Some(m) = &options.mem {
        text += &format!("#SBATCH --mem={}\n", quote(m));
    }
    text
}

fn array_script(plan: &Plan, options: &SlurmOptions, dir: &Path) -> String {
    let d = dir.display().to_string();
    let mut text = sbatch_header(
        options,
        &format!("gaussmask-{}", plan.experiment),
        &format!("{d}/logs/shard-%a.log"),
    );
    text += &format!("#SBATCH --array=0-{}\n", plan.shards - 1);
    if let Some(c) = options.cpus {
        text += &format!("#SBATCH --cpus-per-task={c}\n");
    }
    text += &format!(
        r#"set -euo pipefail
i=$SLURM_ARRAY_TASK_ID
# The sweep's shard count, not $SLURM_ARRAY_TASK_COUNT: a retry is a smaller array.
shards={shards}
sweep={sweep}
out="$sweep/shards/shard-$i"
if [ -f "$out/shard.json" ]; then
  echo "shard $i/$shards: already finished"
  exit 0
fi
if [ -d "$sweep/shards/.shard-$i.checkpoint" ]; then
  # A task that was killed (time limit, preemption) continues where it stopped.
  exec {exe} run {id} --resume "$out" --checkpoint-every {every}
fi
exec {exe} run {id} --config "$sweep/config.toml" --backend {backend} --dtype {dtype} \
  --checkpoint-every {every} --shard "$i/$shards" --out "$out"
"#,
        every = plan.checkpoint_every,
        shards = plan.shards,
        sweep = quote(&d),
        exe = quote(&plan.executable),
        id = plan.experiment,
        backend = plan.backend,
        dtype = plan.dtype,
    );
    text
}

fn merge_script(plan: &Plan, options: &SlurmOptions, dir: &Path) -> String {
    let d = dir.display().to_string();
    let mut text = sbatch_header(
        options,
        &format!("gaussmask-{}-merge", plan.experiment),
        &format!("{d}/logs/merge.log"),
    );
    text += &format!(
        r#"set -euo pipefail
sweep={sweep}
# Every finished shard; merge names the units of any shard that is not there.
dirs=()
for d in "$sweep"/shards/shard-*; do
  if [ -f "$d/shard.json" ]; then dirs+=("$d"); fi
done
if [ ${{#dirs[@]}} -eq 0 ]; then
  echo "error: no finished shard in $sweep/shards (see the task logs in $sweep/logs)" >&2
  exit 2
fi
exec {exe} merge {id} --out "$sweep/result" "${{dirs[@]}}"
"#,
        sweep = quote(&d),
        exe = quote(&plan.executable),
        id = plan.experiment,
    );
    text
}

/// Runs `sbatch --parsable ARGS` and returns the job id.
fn sbatch(args: &[String]) -> Result<String, HarnessError> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| {
            HarnessError::input(format!(
                "cannot run sbatch ({e}): submitting needs a Slurm client on PATH (or submit \
                 the written scripts by hand)"
            ))
        })?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(HarnessError::run(format!(
            "sbatch {} failed: {}",
            args.join(" "),
            err.split_whitespace().collect::<Vec<_>>().join(" ")
        )));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        return Err(HarnessError::run("sbatch printed no job id"));
    }
    Ok(id)
}

/// Submits the array (only the tasks `only`, when given) and the merge job; records the ids.
fn submit(dir: &Path, mut plan: Plan, only: Option<&[usize]>) -> Result<(), HarnessError> {
    let script = |name: &str| dir.join(name).display().to_string();
    let tasks = only.map_or(plan.shards, <[usize]>::len);
    let mut merge_args = Vec::new();
    let mut array = None;
    if tasks > 0 {
        let mut args = Vec::new();
        if let Some(only) = only {
            let list: Vec<String> = only.iter().map(usize::to_string).collect();
            args.push(format!("--array={}", list.join(",")));
        }
        args.push(script("array.sh"));
        let id = sbatch(&args)?;
        plan.jobs.push(("array".into(), id.clone()));
        merge_args.push(format!("--dependency=afterok:{id}"));
        merge_args.push("--kill-on-invalid-dep=yes".into());
        array = Some(id);
    }
    merge_args.push(script("merge.sh"));
    let merge = sbatch(&merge_args)?;
    plan.jobs.push(("merge".into(), merge.clone()));
    write_plan(dir, &plan)?;
    match array {
        Some(a) => println!(
            "submitted: array job {a} ({tasks} task{}), merge job {merge}",
            if tasks == 1 { "" } else { "s" }
        ),
        None => println!("submitted: merge job {merge} (every shard had finished)"),
    }
    println!(
        "result in {}; logs in {}",
        dir.join("result").display(),
        dir.join("logs").display()
    );
    Ok(())
}

fn retry(experiment: &dyn Experiment, dir: &Path) -> Result<(), HarnessError> {
    let dir = absolute(dir)?;
    let file = dir.join("plan.json");
    let text = std::fs::read_to_string(&file).map_err(|_| {
        HarnessError::input(format!(
            "{}: no plan.json: not a sweep directory of gaussmask slurm",
            dir.display()
        ))
    })?;
    let plan: Plan = serde_json::from_str(&text)
        .map_err(|e| HarnessError::input(format!("{}: {e}", file.display())))?;
    if plan.experiment != experiment.id() {
        return Err(HarnessError::input(format!(
            "{}: a sweep of '{}', not of '{}'",
            dir.display(),
            plan.experiment,
            experiment.id()
        )));
    }
    if dir.join("result").exists() {
        println!(
            "nothing to retry: {} is merged already",
            dir.join("result").display()
        );
        return Ok(());
    }
    let missing: Vec<usize> = (0..plan.shards)
        .filter(|i| !dir.join(format!("shards/shard-{i}/shard.json")).exists())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().map(usize::to_string).collect();
        println!(
            "re-submitting shard{} {} of {}",
            if missing.len() == 1 { "" } else { "s" },
            shown.join(", "),
            plan.shards
        );
    }
    submit(&dir, plan, Some(&missing))
}
