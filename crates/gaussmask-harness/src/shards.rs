//! Shards: one run's units split over processes (`gaussmask run <id> --shard I/N`), and the
//! merge of their directories into the run directory a single process would have written
//! (`gaussmask merge <id> --out DIR SHARD_DIR...`).
//!
//! A shard directory holds `shard.json` (experiment, version, backend, float type, I/N and
//! the keys of its units), the resolved `config.toml` and `units/<key>.ron` (each unit's
//! output, in the checkpoint codec). Merge checks that the shards belong together (same
//! experiment, config, seed, version, backend, float type and N), that every shard is there
//! exactly once and holds exactly its units, then runs the experiment's reduce step on the
//! outputs in unit order: the same step, on the same values, as a single-process run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::backend::{Backend, Dtype, make_device};
use crate::error::HarnessError;
use crate::output::RunDir;
use crate::run::{Experiment, RunContext, RunSetup, not_units};
use crate::selection::Shard;

/// `format` of `shard.json`.
pub const SHARD_FORMAT: &str = "gaussmask-shard";

/// What `shard.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Always [`SHARD_FORMAT`].
    pub format: String,
    /// Experiment id.
    pub experiment: String,
    /// gaussmask version that ran it.
    pub version: String,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Whether the run is the config's smoke version.
    #[serde(default)]
    pub smoke: bool,
    /// I/N.
    pub shard: Shard,
    /// Number of units of the whole run.
    pub total_units: usize,
    /// Keys of this shard's units, in order.
    pub units: Vec<String>,
}

/// The shard's units file for `key`.
fn unit_file(key: &str) -> String {
    format!("units/{key}.ron")
}

/// Runs shard `shard` of `experiment` into `ctx`'s (shard) directory.
pub(crate) fn run_shard(
    experiment: &dyn Experiment,
    table: &Table,
    shard: Shard,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let keys = experiment
        .unit_keys(table)?
        .ok_or_else(|| not_units(experiment.id()))?;
    let select = shard.select(keys.len());
    eprintln!(
        "shard {shard}: {} of the run's {} units",
        select.len(),
        keys.len()
    );
    let outputs = experiment.run_units(table, &select, ctx)?;
    let mut units = Vec::with_capacity(outputs.len());
    for (key, bytes) in outputs {
        ctx.write(&unit_file(&key), crate::checkpoint::seal_unit(&key, &bytes))?;
        units.push(key);
    }
    ctx.write_json(
        "shard.json",
        &ShardRecord {
            format: SHARD_FORMAT.into(),
            experiment: experiment.id().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            backend: ctx.backend.to_string(),
            dtype: ctx.dtype.to_string(),
            smoke: ctx.smoke,
            shard,
            total_units: keys.len(),
            units,
        },
    )
}

/// A shard directory as merge reads it.
struct ShardDir {
    path: PathBuf,
    record: ShardRecord,
    config: String,
}

fn read_shard(path: &Path) -> Result<ShardDir, HarnessError> {
    let file = path.join("shard.json");
    let text = std::fs::read_to_string(&file).map_err(|_| {
        let why = if path.is_dir() {
            "no shard.json: not a finished shard directory"
        } else {
            "no such directory"
        };
        HarnessError::input(format!("{}: {why}", path.display()))
    })?;
    let record: ShardRecord = serde_json::from_str(&text)
        .map_err(|e| HarnessError::input(format!("{}: {e}", file.display())))?;
    if record.format != SHARD_FORMAT {
        return Err(HarnessError::input(format!(
            "{}: format '{}' is not {SHARD_FORMAT}",
            file.display(),
            record.format
        )));
    }
    let config_file = path.join("config.toml");
    let config = std::fs::read_to_string(&config_file)
        .map_err(|e| HarnessError::io("read", &config_file, &e))?;
    Ok(ShardDir {
        path: path.to_path_buf(),
        record,
        config,
    })
}

/// How two shards' configs differ, for the message: the seed when that is it, else the first
/// key whose value differs.
fn config_difference(a: &str, b: &str) -> String {
    let (Ok(a), Ok(b)) = (a.parse::<Table>(), b.parse::<Table>()) else {
        return "another config".into();
    };
    if a.get("seed") != b.get("seed") {
        let show = |t: &Table| t.get("seed").map(Value::to_string).unwrap_or("none".into());
        return format!("another seed ({} and {})", show(&a), show(&b));
    }
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .find(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("another config (`{k}` differs)"))
        .unwrap_or_else(|| "another config".into())
}

/// Merges the shard directories `paths` of one run of `experiment` into `out`.
pub(crate) fn merge(
    experiment: &dyn Experiment,
    out: Option<PathBuf>,
    paths: &[PathBuf],
) -> Result<(), HarnessError> {
    let shards = paths
        .iter()
        .map(|p| read_shard(p))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &shards[0];
    for s in &shards {
        let r = &s.record;
        if r.experiment != experiment.id() {
            return Err(HarnessError::input(format!(
                "{}: a shard of '{}', not of '{}'",
                s.path.display(),
                r.experiment,
                experiment.id()
            )));
        }
        let f = &first.record;
        let differs = |what: &str, a: &str, b: &str| {
            HarnessError::input(format!(
                "{} and {} are shards of different runs: {what} {a} and {b}",
                first.path.display(),
                s.path.display()
            ))
        };
        if r.version != f.version {
            return Err(differs("gaussmask version", &f.version, &r.version));
        }
        if r.smoke != f.smoke {
            let show = |x: &ShardRecord| if x.smoke { "smoke" } else { "full" };
            return Err(differs("run", show(f), show(r)));
        }
        if (&r.backend, &r.dtype) != (&f.backend, &f.dtype) {
            let show = |x: &ShardRecord| format!("{} ({})", x.backend, x.dtype);
            return Err(differs("backend", &show(f), &show(r)));
        }
        if r.shard.count != f.shard.count {
            return Err(differs(
                "shard count",
                &f.shard.count.to_string(),
                &r.shard.count.to_string(),
            ));
        }
        if s.config != first.config {
            return Err(HarnessError::input(format!(
                "{} and {} are shards of different runs: {}",
                first.path.display(),
                s.path.display(),
                config_difference(&first.config, &s.config)
            )));
        }
    }
    let count = first.record.shard.count;
    let mut by_index: BTreeMap<usize, &ShardDir> = BTreeMap::new();
    for s in &shards {
        if let Some(other) = by_index.insert(s.record.shard.index, s) {
            return Err(HarnessError::input(format!(
                "shard {} is given twice: {} and {}",
                s.record.shard,
                other.path.display(),
                s.path.display()
            )));
        }
    }
    let table = crate::config::parse_text(
        &first.config,
        &first.path.join("config.toml").display().to_string(),
    )?;
    experiment.check(&table)?;
    let keys = experiment
        .unit_keys(&table)?
        .ok_or_else(|| not_units(experiment.id()))?;
    let missing: Vec<usize> = (0..count).filter(|i| !by_index.contains_key(i)).collect();
    if !missing.is_empty() {
        let units: Vec<&str> = missing
            .iter()
            .flat_map(|&i| Shard { index: i, count }.select(keys.len()))
            .map(|k| keys[k].as_str())
            .collect();
        let shown: Vec<String> = missing.iter().map(|i| format!("{i}/{count}")).collect();
        return Err(HarnessError::input(format!(
            "missing shard{} {} of {}: units {} are not there (run them with gaussmask run {} \
             --config {} --shard I/{count}, or gaussmask slurm {} --retry DIR)",
            if missing.len() > 1 { "s" } else { "" },
            shown.join(", "),
            experiment.id(),
            if units.is_empty() {
                "(none)".to_string()
            } else {
                units.join(", ")
            },
            experiment.id(),
            first.path.join("config.toml").display(),
            experiment.id()
        )));
    }
    let mut outputs = Vec::with_capacity(keys.len());
    for (k, key) in keys.iter().enumerate() {
        let s = by_index[&(k % count)];
        if !s.record.units.contains(key) || s.record.total_units != keys.len() {
            return Err(HarnessError::input(format!(
                "{}: shard {} should hold unit {key} of {} units; it records {} of {}",
                s.path.display(),
                s.record.shard,
                keys.len(),
                s.record.units.len(),
                s.record.total_units
            )));
        }
        let file = s.path.join(unit_file(key));
        let sealed = std::fs::read(&file).map_err(|e| HarnessError::io("read", &file, &e))?;
        let body = crate::checkpoint::open_unit(key, &sealed)
            .map_err(|e| HarnessError::input(format!("{}: {e}", file.display())))?;
        outputs.push(body.to_vec());
    }
    let unknown = |what: &str, value: &str| {
        HarnessError::input(format!(
            "{}: unknown {what} '{value}'",
            first.path.join("shard.json").display()
        ))
    };
    let backend = Backend::from_str(&first.record.backend, true)
        .map_err(|_| unknown("backend", &first.record.backend))?;
    let dtype = Dtype::from_str(&first.record.dtype, true)
        .map_err(|_| unknown("dtype", &first.record.dtype))?;
    // The reduce step computes on the host: a CPU device does, whatever ran the shards (a
    // login node has no GPU).
    let host = Backend::compiled()
        .into_iter()
        .find(|b| !b.is_gpu())
        .unwrap_or(backend);
    let device = make_device(host, dtype)?;
    let target = out.unwrap_or_else(|| crate::output::results_target(experiment.id()));
    let dir = RunDir::create(target.clone())?;
    let seed = crate::config::seed_of(&table);
    // run.json records what the reduce step ran on (the shards' backend is in their records).
    let mut ctx = RunContext::new(RunSetup {
        device,
        backend: host,
        dtype,
        smoke: first.record.smoke,
        save_weights: false,
        diagnostics: None,
        checkpoints: crate::checkpoint::Checkpoints::new(crate::checkpoint::folder_for(&target), 0),
        dir,
        experiment: experiment.id(),
        command: experiment.command(),
        seed,
    });
    ctx.write("config.toml", &first.config)?;
    eprintln!(
        "merging {} shards of {} ({} units) → {}",
        count,
        experiment.id(),
        keys.len(),
        ctx.target().display()
    );
    experiment.reduce_units(&table, &outputs, &mut ctx)?;
    ctx.finish()
}
