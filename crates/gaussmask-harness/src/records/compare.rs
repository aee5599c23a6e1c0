//! Saving a run as a record, and re-running a record to compare.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{COMMITTED_MAX_BYTES, MANIFEST, Record, is_data_file, is_wall_time};
use crate::error::HarnessError;
use crate::provenance::{cpu_features, sha256_hex};

/// How closely a re-run must match its record when the CPU's vector extensions differ from
/// the record's (with the same extensions, it must match exactly).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Largest relative difference |a − b| / max(|a|, |b|) of any number.
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        // f32 sweeps summed in another order drift by ~1e-4 over 2000 steps (trajectories'
        // autodiff and host engines differ by 1.0e-3 at most over 42 021 values).
        Self { rtol: 2e-3 }
    }
}

/// The data files under `dir`, by path relative to it (`/`-separated), sorted.
fn data_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, HarnessError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| HarnessError::io("read", &d, &e))?;
        for entry in entries {
            let path = entry.map_err(|e| HarnessError::io("read", &d, &e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if is_data_file(&rel) && rel != MANIFEST {
                    out.push((rel, path));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, HarnessError> {
    std::fs::read(path).map_err(|e| HarnessError::io("read", path, &e))
}

/// Saves the finished run in `run_dir` as the record `records/<name>/` under `root` (`name`
/// defaults to the experiment id). An existing record is replaced only with `replace`.
///
/// # Errors
/// Not a finished run, a smoke run, a run whose code no commit names (uncommitted changes, or
/// a binary built from another commit than the checkout it ran in), an existing record without
/// `replace`, or a failed write.
pub fn save(
    run_dir: &Path,
    root: &Path,
    name: Option<&str>,
    replace: bool,
) -> Result<PathBuf, HarnessError> {
    let run = Record::open(run_dir).map_err(|e| {
        e.with_hint("a record is made from a finished run directory (it has run.json)")
    })?;
    if run.run.smoke {
        return Err(HarnessError::input(format!(
            "{}: a smoke run is not a record (record the full run)",
            run_dir.display()
        )));
    }
    // A record names the commit that made it; that is only true of a clean, matching build.
    let r = &run.run;
    let unnamed = if r.uncommitted_changes == Some(true) {
        Some("its working directory had uncommitted changes".to_string())
    } else if let (Some(built), Some(checkout)) = (&r.build_revision, &r.git_revision)
        && built != checkout
    {
        Some(format!(
            "its binary was built from {} but ran in a checkout at {}",
            super::short_revision(built),
            super::short_revision(checkout)
        ))
    } else {
        None
    };
    if let Some(why) = unnamed {
        return Err(HarnessError::input(format!(
            "{}: no commit names the code of this run ({why}); commit, rebuild and run it again",
            run_dir.display()
        )));
    }
    let name = name.unwrap_or(&run.run.experiment);
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(HarnessError::input(format!(
            "--name: '{name}' is not a folder name"
        )));
    }
    let records = root.join(super::RECORDS_DIR);
    let target = records.join(name);
    if target.exists() && !replace {
        return Err(HarnessError::input(format!(
            "{} exists; pass --replace to record this run in its place",
            target.display()
        )));
    }
    // Built beside the target and renamed into place: a failed save leaves the old record.
    let staged = records.join(format!(".{name}.saving"));
    let failed =
        |what: &str, path: &Path, e: std::io::Error| HarnessError::write_failed(what, path, &e);
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir_all(&staged).map_err(|e| failed("create", &staged, e))?;
    let mut manifest = String::new();
    for (rel, path) in data_files(run_dir)? {
        let bytes = read(&path)?;
        manifest.push_str(&format!("{}  {rel}\n", sha256_hex(&bytes)));
        if bytes.len() as u64 <= COMMITTED_MAX_BYTES {
            let to = staged.join(&rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| failed("create", parent, e))?;
            }
            std::fs::write(&to, bytes).map_err(|e| failed("write", &to, e))?;
        }
    }
    for (file, bytes) in [
        ("run.json", read(&run_dir.join("run.json"))?),
        (MANIFEST, manifest.into_bytes()),
    ] {
        let to = staged.join(file);
        std::fs::write(&to, bytes).map_err(|e| failed("write", &to, e))?;
    }
    if target.exists() {
        let old = records.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&target, &old).map_err(|e| failed("move aside", &target, e))?;
        std::fs::rename(&staged, &target).map_err(|e| failed("rename", &staged, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, &target).map_err(|e| failed("rename", &staged, e))?;
    }
    Ok(target)
}

/// The record's manifest: (sha256, file) per data file of the run.
fn manifest(record: &Record) -> Result<Vec<(String, String)>, HarnessError> {
    let path = record.dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| HarnessError::io("read the record's manifest", &path, &e))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            line.split_once("  ")
                .map(|(h, f)| (h.to_string(), f.to_string()))
                .ok_or_else(|| {
                    HarnessError::input(format!(
                        "{}:{}: expected '<sha256>  <file>'",
                        path.display(),
                        i + 1
                    ))
                })
        })
        .collect()
}

/// The arguments that re-run `record` into `out`: its experiment, its resolved config, its
/// backend, dtype and diagnostics.
fn rerun_args(record: &Record, out: &Path) -> Result<Vec<String>, HarnessError> {
    let config = record.path("config.toml")?;
    let run = &record.run;
    let mut args = vec![
        "run".to_string(),
        run.experiment.clone(),
        "--config".into(),
        config.display().to_string(),
        "--backend".into(),
        run.backend.clone(),
        "--dtype".into(),
        run.dtype.clone(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(i) = run.command.iter().position(|a| a == "--diagnostics")
        && let Some(value) = run.command.get(i + 1)
    {
        args.extend(["--diagnostics".to_string(), value.clone()]);
    }
    Ok(args)
}

/// Re-runs `record` with the binary `exe` and compares every data file with the record:
/// identical apart from wall times where this CPU has the record's vector extensions, within
/// `tolerance` otherwise (files kept as a hash only are then not compared). Returns one line
/// saying what was compared.
///
/// # Errors
/// The re-run failed, or a file differs: the message names the file and the first difference.
pub fn check(record: &Record, exe: &Path, tolerance: Tolerance) -> Result<String, HarnessError> {
    let files = manifest(record)?;
    let scratch = std::env::temp_dir().join(format!(
        "gaussmask-records-check-{}-{}",
        std::process::id(),
        record.name
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    let out = scratch.join("run");
    let result = Command::new(exe)
        .args(rerun_args(record, &out)?)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| HarnessError::run(format!("cannot start {}: {e}", exe.display())));
    let outcome = result.and_then(|output| {
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(HarnessError::run(format!(
                "record {}: the re-run failed: {}",
                record.name,
                last.unwrap_or("(no message)")
            )));
        }
        compare_run(record, &files, &out, tolerance)
    });
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn compare_run(
    record: &Record,
    files: &[(String, String)],
    out: &Path,
    tolerance: Tolerance,
) -> Result<String, HarnessError> {
    let same_cpu = record.run.cpu_features == cpu_features();
    let rtol = (!same_cpu).then_some(tolerance.rtol);
    let differs = |file: &str, what: String| {
        HarnessError::run(format!(
            "record {}: {file} {what} (if the change is intended, re-record with `gaussmask \
             records save`)",
            record.name
        ))
    };
    let fresh = data_files(out)?;
    for (rel, _) in &fresh {
        if !files.iter().any(|(_, f)| f == rel) {
            return Err(differs(
                rel,
                "is written by the run but not recorded".into(),
            ));
        }
    }
    let (mut compared, mut hashed_only, mut worst) = (0, 0, 0.0_f64);
    for (hash, file) in files {
        let Some((_, path)) = fresh.iter().find(|(rel, _)| rel == file) else {
            return Err(differs(
                file,
                "is recorded but the run no longer writes it".into(),
            ));
        };
        let now = read(path)?;
        let committed = record.dir.join(file);
        if committed.is_file() {
            let then = read(&committed)?;
            let diff = compare_values(file, &then, &now, rtol).map_err(|e| differs(file, e))?;
            worst = worst.max(diff);
            compared += 1;
        } else if same_cpu {
            if sha256_hex(&now) != *hash {
                return Err(differs(file, "differs from its recorded SHA-256".into()));
            }
            compared += 1;
        } else {
            hashed_only += 1;
        }
    }
    Ok(match rtol {
        None => format!(
            "record {}: {compared} files identical to the record apart from wall times (same \
             CPU vector extensions)",
            record.name
        ),
        Some(rtol) => format!(
            "record {}: {compared} files within relative {rtol:e} (largest difference {worst:.2e}; \
             this CPU's vector extensions differ from the record's){}",
            record.name,
            if hashed_only > 0 {
                format!("; {hashed_only} files kept only as a hash not compared")
            } else {
                String::new()
            }
        ),
    })
}

/// Compares two versions of a data file value by value, leaving wall times out: equal text
/// when `rtol` is `None`, numbers within `rtol` relative otherwise. Returns the largest
/// relative difference, or the first difference found.
fn compare_values(file: &str, then: &[u8], now: &[u8], rtol: Option<f64>) -> Result<f64, String> {
    let mut worst = 0.0_f64;
    let mut cell = |at: &str, a: &str, b: &str| -> Result<(), String> {
        if a == b {
            return Ok(());
        }
        match (rtol, a.parse::<f64>(), b.parse::<f64>()) {
            (Some(rtol), Ok(x), Ok(y)) => {
                let rel = (x - y).abs() / x.abs().max(y.abs());
                worst = worst.max(rel);
                if rel <= rtol {
                    return Ok(());
                }
                Err(format!(
                    "differs at {at}: recorded {a}, now {b} (relative {rel:.2e})"
                ))
            }
            _ => Err(format!("differs at {at}: recorded {a}, now {b}")),
        }
    };
    if file.ends_with(".json") {
        let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes);
        let (a, b) = match (parse(then), parse(now)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err("is not valid JSON".into()),
        };
        json_walk("", &a, &b, &mut cell)?;
    } else if file.ends_with(".csv") {
        let rows = |bytes: &[u8]| -> Result<Vec<Vec<String>>, String> {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes)
                .records()
                .map(|r| {
                    r.map(|r| r.iter().map(str::to_string).collect())
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        let (a, b) = (rows(then)?, rows(now)?);
        if a.len() != b.len() || a.first() != b.first() {
            return Err(format!(
                "has another shape: {} rows (header {:?}) recorded, {} ({:?}) now",
                a.len(),
                a.first(),
                b.len(),
                b.first()
            ));
        }
        let header = a.first().cloned().unwrap_or_default();
        for (i, (ra, rb)) in a.iter().zip(&b).enumerate().skip(1) {
            for (c, name) in header.iter().enumerate() {
                if is_wall_time(name) {
                    continue;
                }
                let (x, y) = (ra.get(c), rb.get(c));
                cell(
                    &format!("row {i}, column '{name}'"),
                    x.map_or("", String::as_str),
                    y.map_or("", String::as_str),
                )?;
            }
        }
    } else if then != now {
        return Err("differs".into());
    }
    Ok(worst)
}

fn json_walk(
    at: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    cell: &mut impl FnMut(&str, &str, &str) -> Result<(), String>,
) -> Result<(), String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| {
                m.keys()
                    .filter(|k| !is_wall_time(k))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if keys(x) != keys(y) {
                return Err(format!(
                    "has other keys at '{at}': {:?} recorded, {:?} now",
                    keys(x),
                    keys(y)
                ));
            }
            for k in keys(x) {
                json_walk(&format!("{at}.{k}"), &x[&k], &y[&k], cell)?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!(
                    "has {} items at '{at}' recorded, {} now",
                    x.len(),
                    y.len()
                ));
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                json_walk(&format!("{at}[{i}]"), p, q, cell)?;
            }
            Ok(())
        }
        _ => cell(at, &a.to_string(), &b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_exactly_or_within_the_tolerance_without_wall_times() {
        let a = br#"{"kappa": 0.4, "loss": 391.81, "wall_time_s": 3.0, "rows": [1, 2]}"#;
        let b = br#"{"kappa": 0.4, "loss": 391.82, "wall_time_s": 9.0, "rows": [1, 2]}"#;
        let e = compare_values("s.json", a, b, None).unwrap_err();
        assert!(e.contains(".loss") && e.contains("391.81"), "{e}");
        let worst = compare_values("s.json", a, b, Some(1e-4)).unwrap();
        assert!((worst - 0.01 / 391.82).abs() < 1e-9);
        assert!(compare_values("s.json", a, b, Some(1e-5)).is_err());
        let c = br#"{"kappa": 0.4, "loss": 391.81, "rows": [1, 2, 3]}"#;
        assert!(compare_values("s.json", a, c, Some(1.0)).is_err());

        let a = b"kappa,loss,time_s\n0.4,391.81,3\n1,483.15,4\n";
        let b = b"kappa,loss,time_s\n0.4,391.81,5\n1,483.15,6\n";
        assert_eq!(compare_values("t.csv", a, b, None), Ok(0.0));
        let c = b"kappa,loss,time_s\n0.4,391.81,5\n1,483.16,6\n";
        let e = compare_values("t.csv", a, c, None).unwrap_err();
        assert!(e.contains("row 2, column 'loss'"), "{e}");
        let d = b"kappa,loss2,time_s\n0.4,391.81,5\n1,483.15,6\n";
        assert!(compare_values("t.csv", a, d, Some(1.0)).is_err());
    }
}
