//! `gaussmask records save|tables|check`: the command over [`records`](crate::records).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::error::HarnessError;
use crate::records::{
    BENCH, README_GLOBS, RECORDS_DIR, Record, Tables, Tolerance, bench_tables, check, regenerate,
    save,
};
use crate::run::{Experiment, find_experiment};

/// What `gaussmask records` does.
#[derive(Subcommand, Debug)]
pub enum RecordsAction {
    /// Save a finished full run as the record `records/<NAME>/` (its data files and hashes).
    Save {
        /// The run directory.
        run_dir: PathBuf,
        /// The record's name; default the experiment id.
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing record of that name.
        #[arg(long)]
        replace: bool,
        /// The repository root.
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
    /// Write every README's record blocks from the records and check the READMEs' claims;
    /// with --check, change nothing and fail if a block is stale or a claim does not hold.
    Tables {
        /// Only check (exit 1 when a README differs from what the records give).
        #[arg(long)]
        check: bool,
        /// The repository root.
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
    /// Re-run records at full size and compare their files: identical where this CPU has the
    /// record's vector extensions, within --rtol otherwise.
    Check {
        /// Record names (folders of records/).
        #[arg(value_name = "NAME", required_unless_present = "all")]
        names: Vec<String>,
        /// Every record (the image experiments take about half an hour each).
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Relative tolerance when the CPU's vector extensions differ from the record's.
        #[arg(long, default_value_t = Tolerance::default().rtol)]
        rtol: f64,
        /// The repository root.
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
}

/// Runs one `gaussmask records` action.
///
/// # Errors
/// Bad input (exit 2), or a stale table, a failed claim or a record that no longer reproduces
/// (exit 1).
pub fn run(action: RecordsAction, experiments: &[&dyn Experiment]) -> Result<(), HarnessError> {
    match action {
        RecordsAction::Save {
            run_dir,
            name,
            replace,
            root,
        } => {
            let target = save(&run_dir, &root, name.as_deref(), replace)?;
            println!("recorded {} as {}", run_dir.display(), target.display());
            Ok(())
        }
        RecordsAction::Tables { check, root } => tables(experiments, &root, check),
        RecordsAction::Check {
            names,
            all,
            rtol,
            root,
        } => {
            if !(rtol.is_finite() && rtol >= 0.0) {
                return Err(HarnessError::input(format!(
                    "--rtol must be a finite number ≥ 0, got {rtol}"
                )));
            }
            let names = if all { record_names(&root)? } else { names };
            let exe = std::env::current_exe()
                .map_err(|e| HarnessError::run(format!("cannot find this binary: {e}")))?;
            let mut failed = Vec::new();
            for name in &names {
                let record = open(&root, name)?;
                find_experiment(experiments, &record.run.experiment)?;
                match check(&record, &exe, Tolerance { rtol }) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed.push(name.clone());
                    }
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(HarnessError::run(format!(
                    "{} of {} records no longer reproduce: {}",
                    failed.len(),
                    names.len(),
                    failed.join(", ")
                )))
            }
        }
    }
}

fn open(root: &Path, name: &str) -> Result<Record, HarnessError> {
    let dir = root.join(RECORDS_DIR).join(name);
    if !dir.is_dir() {
        let known = record_names(root).unwrap_or_default();
        return Err(HarnessError::input(format!(
            "no record '{name}' in {} (recorded: {})",
            root.join(RECORDS_DIR).display(),
            known.join(", ")
        )));
    }
    Record::open(&dir)
}

/// The names of the records under `root`, sorted.
fn record_names(root: &Path) -> Result<Vec<String>, HarnessError> {
    let dir = root.join(RECORDS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| HarnessError::io("read", &dir, &e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The READMEs under `root` that may hold record blocks.
fn readmes(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for glob in README_GLOBS {
        match glob.split_once("/*/") {
            Some((dir, file)) => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join(file))
                    .filter(|p| p.is_file())
                    .collect();
                found.sort();
                out.extend(found);
            }
            None => {
                let path = root.join(glob);
                if path.is_file() {
                    out.push(path);
                }
            }
        }
    }
    out
}

/// The blocks and claims of one record: the experiment's own, and `run` (where the numbers
/// come from) for every record.
fn render(experiments: &[&dyn Experiment], record: &Record) -> Result<Tables, HarnessError> {
    let experiment = find_experiment(experiments, &record.run.experiment)?;
    let mut tables = experiment.tables(record)?;
    tables.block("run", record.provenance());
    Ok(tables)
}

fn tables(experiments: &[&dyn Experiment], root: &Path, check: bool) -> Result<(), HarnessError> {
    let names = record_names(root)?;
    let mut rendered: BTreeMap<String, Tables> = BTreeMap::new();
    for name in &names {
        rendered.insert(name.clone(), render(experiments, &open(root, name)?)?);
    }
    let (mut stale, mut blocks) = (Vec::new(), 0);
    for path in readmes(root) {
        let text =
            std::fs::read_to_string(&path).map_err(|e| HarnessError::io("read", &path, &e))?;
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let new = regenerate(&text, &shown, |name, table| {
            blocks += 1;
            if name == BENCH {
                return bench_tables(root, table);
            }
            let tables = rendered.get(name).ok_or_else(|| {
                HarnessError::input(format!(
                    "no record '{name}' (recorded: {})",
                    names.join(", ")
                ))
            })?;
            tables.get(table).map(str::to_string).ok_or_else(|| {
                HarnessError::input(format!(
                    "record '{name}' has no table '{table}' (it has: {})",
                    tables.names().join(", ")
                ))
            })
        })?;
        if new != text {
            stale.push(shown);
            if !check {
                crate::output::write_atomic(&path, new.as_bytes())?;
            }
        }
    }
    let mut failed = Vec::new();
    for (name, tables) in &rendered {
        for claim in tables.claims() {
            let mark = if claim.holds { "holds" } else { "FAILS" };
            println!("claim of {name}: {mark}: {}", claim.statement);
            if !claim.holds {
                failed.push(format!("{name}: {}", claim.statement));
            }
        }
    }
    match (check, stale.is_empty()) {
        (true, false) => {
            return Err(HarnessError::run(format!(
                "the record blocks of {} differ from what the records give: run `gaussmask \
                 records tables`",
                stale.join(", ")
            )));
        }
        (false, false) => println!("rewrote the record blocks of {}", stale.join(", ")),
        _ => println!(
            "{blocks} record blocks up to date ({} records)",
            names.len()
        ),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::run(format!(
            "{} claims do not hold for their records: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}
