//! Recorded results: the files of one full run per experiment, committed under
//! `records/<name>/`, the README tables generated from them, and the check that a re-run still
//! gives them.
//!
//! A record holds the run's `run.json` (commit, command, backend, dtype, CPU and its vector
//! extensions), `SHA256SUMS` over every data file the run wrote (CSV, JSON, TOML; not figures),
//! and those data files up to [`COMMITTED_MAX_BYTES`] each: larger ones are kept as their hash
//! only. `gaussmask records save` makes one, `gaussmask records tables` writes the README tables
//! from them (between `<!-- record: NAME/TABLE -->` and `<!-- end record -->`), and
//! `gaussmask records check` re-runs them.

mod compare;
mod readme;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use compare::{Tolerance, check, save};
pub use readme::{README_GLOBS, regenerate};

use crate::error::HarnessError;
use crate::provenance::RunRecord;

/// The folder of the records, under the repository root.
pub const RECORDS_DIR: &str = "records";
/// The manifest of a record: `<sha256>  <file>` per data file, as `sha256sum` writes it.
pub const MANIFEST: &str = "SHA256SUMS";
/// Data files larger than this are recorded by their hash only (the per-step CSV of a sweep
/// runs to megabytes; the tables read the summaries).
pub const COMMITTED_MAX_BYTES: u64 = 256 * 1024;

/// Whether a JSON key or CSV column holds a wall time (which no re-run reproduces).
pub fn is_wall_time(key: &str) -> bool {
    key.ends_with("time_s") || key == "seconds"
}

/// Whether a file of a run directory is data (recorded and compared): not a figure, not the
/// run's own `run.json`.
pub(crate) fn is_data_file(name: &str) -> bool {
    name != "run.json"
        && [".csv", ".json", ".toml"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// One recorded run, read from `records/<name>/`.
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's folder name (the experiment id, or a variant such as
    /// `trajectories-diagnostics`).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its `run.json`.
    pub run: RunRecord,
}

impl Record {
    /// Reads the record in `dir`.
    ///
    /// # Errors
    /// A missing or unreadable `run.json`, named.
    pub fn open(dir: &Path) -> Result<Self, HarnessError> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| HarnessError::io("read the record", &path, &e))?;
        let run: RunRecord = serde_json::from_str(&text).map_err(|e| {
            HarnessError::input(format!("{}: not a run record: {e}", path.display()))
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            run,
        })
    }

    fn path(&self, file: &str) -> Result<PathBuf, HarnessError> {
        let path = self.dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::input(format!(
                "record {}: {file} is not committed (re-record it with `gaussmask records save`)",
                self.name
            )))
        }
    }

    /// A JSON file of the record.
    ///
    /// # Errors
    /// A missing or malformed file, named.
    pub fn json(&self, file: &str) -> Result<Json, HarnessError> {
        let path = self.path(file)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| HarnessError::io("read the record file", &path, &e))?;
        let value = serde_json::from_str(&text)
            .map_err(|e| HarnessError::input(format!("{}: {e}", path.display())))?;
        Ok(Json {
            value,
            at: format!("{}/{file}", self.name),
        })
    }

    /// A CSV file of the record.
    ///
    /// # Errors
    /// A missing or malformed file, named.
    pub fn csv(&self, file: &str) -> Result<Csv, HarnessError> {
        let path = self.path(file)?;
        let bad = |e: csv::Error| HarnessError::input(format!("{}: {e}", path.display()));
        let mut reader = csv::Reader::from_path(&path).map_err(bad)?;
        let header: Vec<String> = reader
            .headers()
            .map_err(bad)?
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
            .collect::<Result<Vec<Vec<String>>, _>>()
            .map_err(bad)?;
        Ok(Csv {
            header,
            rows,
            at: format!("{}/{file}", self.name),
        })
    }

    /// The line that says where the record's numbers come from: the command, the commit, the
    /// backend, dtype and CPU, and the wall time.
    pub fn provenance(&self) -> String {
        let run = &self.run;
        let mut args: Vec<&str> = vec!["gaussmask"];
        let mut skip = false;
        for a in run.command.iter().skip(1) {
            if skip {
                skip = false;
                continue;
            }
            if a == "--out" {
                skip = true;
                continue;
            }
            args.push(a);
        }
        let commit = run
            .build_revision
            .as_deref()
            .or(run.git_revision.as_deref())
            .map(|r| format!(" at commit {}", short_revision(r)))
            .unwrap_or_default();
        let vector = if run.cpu_features.iter().any(|f| f.starts_with("avx512")) {
            ", AVX-512"
        } else if run.cpu_features.iter().any(|f| f == "avx2") {
            ", AVX2"
        } else {
            ""
        };
        format!(
            "`{}`{commit} ({}, {}, {} threads on {}{vector}; wall time {}); files in \
             `records/{}/`.",
            args.join(" "),
            run.backend,
            run.dtype,
            run.threads,
            run.cpu,
            seconds(run.wall_time_s),
            self.name
        )
    }
}

/// The record name under which README blocks cite a benchmark record: `<!-- record:
/// bench/<file> -->` is the tables of `bench/results/<file>`.
pub const BENCH: &str = "bench";

/// The tables of the benchmark record `file` (a `bench/run` result under `bench/results/` of
/// `root`): every markdown table above its first section heading, as recorded.
///
/// # Errors
/// A missing file, or one without a table.
pub fn bench_tables(root: &Path, file: &str) -> Result<String, HarnessError> {
    let path = root.join("bench").join("results").join(file);
    if file.contains(['/', '\\']) || !path.is_file() {
        return Err(HarnessError::input(format!(
            "no benchmark record {} (the files of bench/results/)",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::io("read", &path, &e))?;
    let mut tables: Vec<Vec<&str>> = Vec::new();
    let mut in_table = false;
    for line in text.lines().skip(1).take_while(|l| !l.starts_with("## ")) {
        if line.starts_with('|') {
            if !in_table {
                tables.push(Vec::new());
            }
            if let Some(t) = tables.last_mut() {
                t.push(line);
            }
        }
        in_table = line.starts_with('|');
    }
    if tables.is_empty() {
        return Err(HarnessError::input(format!("{}: no table", path.display())));
    }
    Ok(tables
        .iter()
        .map(|t| t.join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n"))
}

/// A wall time as people read it: "52.2 s", "24.8 min".
fn seconds(s: f64) -> String {
    if s < 600.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// A JSON file of a record, with accessors whose errors name the file and key.
#[derive(Debug, Clone)]
pub struct Json {
    /// The parsed value.
    pub value: serde_json::Value,
    at: String,
}

impl Json {
    /// The array under `key`, each element with the same error context.
    ///
    /// # Errors
    /// No such key, or not an array.
    pub fn array(&self, key: &str) -> Result<Vec<Json>, HarnessError> {
        self.get(key)?.items()
    }

    /// The elements of this value, which must be an array (a summary that is a list).
    ///
    /// # Errors
    /// Not an array.
    pub fn items(&self) -> Result<Vec<Json>, HarnessError> {
        match &self.value {
            serde_json::Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Json {
                    value: v.clone(),
                    at: format!("{}[{i}]", self.at),
                })
                .collect()),
            _ => Err(HarnessError::input(format!("{}: not an array", self.at))),
        }
    }

    /// The object under `key`.
    ///
    /// # Errors
    /// No such key.
    pub fn get(&self, key: &str) -> Result<Json, HarnessError> {
        self.value
            .get(key)
            .map(|v| Json {
                value: v.clone(),
                at: format!("{}.{key}", self.at),
            })
            .ok_or_else(|| self.missing(key, "a value"))
    }

    /// The number under `key`.
    ///
    /// # Errors
    /// No such key, or not a number.
    pub fn f64(&self, key: &str) -> Result<f64, HarnessError> {
        self.value
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| self.missing(key, "a number"))
    }

    /// The two numbers under `key` (a `[mean, sd]` or `[start, end]` pair).
    ///
    /// # Errors
    /// No such key, or not an array of two numbers.
    pub fn pair(&self, key: &str) -> Result<(f64, f64), HarnessError> {
        match self.value.get(key).and_then(serde_json::Value::as_array) {
            Some(v) if v.len() == 2 => match (v[0].as_f64(), v[1].as_f64()) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(self.missing(key, "pair of numbers")),
            },
            _ => Err(self.missing(key, "pair of numbers")),
        }
    }

    /// The text under `key`.
    ///
    /// # Errors
    /// No such key, or not a string.
    pub fn str(&self, key: &str) -> Result<String, HarnessError> {
        self.value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.missing(key, "a string"))
    }

    fn missing(&self, key: &str, what: &str) -> HarnessError {
        HarnessError::input(format!("{}: no {what} under '{key}'", self.at))
    }
}

/// The distinct values among `values`, in order of first appearance (the axes of a table made
/// from a long-form summary).
///
/// # Errors
/// The first error among `values`.
pub fn first_seen<T: PartialEq>(
    values: impl IntoIterator<Item = Result<T, HarnessError>>,
) -> Result<Vec<T>, HarnessError> {
    let mut out: Vec<T> = Vec::new();
    for v in values {
        let v = v?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The distinct numbers under `key` over `rows`, in order of first appearance.
///
/// # Errors
/// A row without a number under `key`.
pub fn distinct(rows: &[Json], key: &str) -> Result<Vec<f64>, HarnessError> {
    first_seen(rows.iter().map(|r| r.f64(key)))
}

/// The distinct texts under `key` over `rows`, in order of first appearance.
///
/// # Errors
/// A row without a string under `key`.
pub fn distinct_text(rows: &[Json], key: &str) -> Result<Vec<String>, HarnessError> {
    first_seen(rows.iter().map(|r| r.str(key)))
}

/// The first of `rows` whose numbers under `numbers` and texts under `texts` are the given
/// ones (the cell of a table at those coordinates).
pub fn find<'a>(
    rows: &'a [Json],
    numbers: &[(&str, f64)],
    texts: &[(&str, &str)],
) -> Option<&'a Json> {
    rows.iter().find(|r| {
        numbers.iter().all(|(k, v)| r.f64(k).is_ok_and(|x| x == *v))
            && texts.iter().all(|(k, v)| r.str(k).is_ok_and(|x| x == *v))
    })
}

/// Column headings for a series of values: `first` names what they are at the first
/// ("20 epochs", "image: test accuracy K = 1"), `rest` at the others ("40", "K = 5").
pub fn series_headings(
    values: &[String],
    first: impl Fn(&str) -> String,
    rest: impl Fn(&str) -> String,
) -> Vec<String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 0 { first(v) } else { rest(v) })
        .collect()
}

/// A CSV file of a record: its header and rows as text.
#[derive(Debug, Clone)]
pub struct Csv {
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
    at: String,
}

impl Csv {
    /// The index of column `name`.
    ///
    /// # Errors
    /// No such column.
    pub fn column(&self, name: &str) -> Result<usize, HarnessError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| HarnessError::input(format!("{}: no column '{name}'", self.at)))
    }

    /// The cell of `row` in column `name`, as a number.
    ///
    /// # Errors
    /// No such column, or a cell that is not a number.
    pub fn f64(&self, row: usize, name: &str) -> Result<f64, HarnessError> {
        let text = self.str(row, name)?;
        text.parse().map_err(|_| {
            HarnessError::input(format!(
                "{}: row {}, column '{name}': '{text}' is not a number",
                self.at,
                row + 1
            ))
        })
    }

    /// The cell of `row` in column `name`.
    ///
    /// # Errors
    /// No such column.
    pub fn str(&self, row: usize, name: &str) -> Result<&str, HarnessError> {
        let c = self.column(name)?;
        Ok(self.rows[row].get(c).map(String::as_str).unwrap_or(""))
    }

    /// The distinct numbers of column `name` over `rows`, in order of first appearance.
    ///
    /// # Errors
    /// No such column, or a cell that is not a number.
    pub fn distinct(&self, rows: &[usize], name: &str) -> Result<Vec<f64>, HarnessError> {
        first_seen(rows.iter().map(|&r| self.f64(r, name)))
    }

    /// The first of `rows` whose numbers in the columns `at` are the given ones.
    pub fn find(&self, rows: &[usize], at: &[(&str, f64)]) -> Option<usize> {
        rows.iter().copied().find(|&r| {
            at.iter()
                .all(|(c, v)| self.f64(r, c).is_ok_and(|x| x == *v))
        })
    }

    /// The rows grouped by the text of column `name`, in order of first appearance.
    ///
    /// # Errors
    /// No such column.
    pub fn group_by(&self, name: &str) -> Result<Vec<(String, Vec<usize>)>, HarnessError> {
        let c = self.column(name)?;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            let key = row.get(c).cloned().unwrap_or_default();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        Ok(groups)
    }
}

/// A markdown table built row by row.
#[derive(Debug, Clone)]
pub struct Markdown {
    lines: Vec<String>,
}

impl Markdown {
    /// A table with these column headings.
    pub fn new<S: AsRef<str>>(headings: &[S]) -> Self {
        let heads: Vec<&str> = headings.iter().map(AsRef::as_ref).collect();
        Self {
            lines: vec![
                format!("| {} |", heads.join(" | ")),
                format!("|{}", "---|".repeat(heads.len())),
            ],
        }
    }

    /// Appends a row.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> &mut Self {
        let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
        self.lines.push(format!("| {} |", cells.join(" | ")));
        self
    }

    /// The table's text (no trailing newline).
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// `x` with `digits` significant digits, plain where that is short ("375.12", "0.0264"),
/// in exponent form otherwise ("1.82e-2"), with a true minus sign.
pub fn sig(x: f64, digits: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let text = if (-3..6).contains(&magnitude) {
        let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        let e = format!("{x:.prec$e}", prec = digits.saturating_sub(1));
        e.replace("e-", "e−")
    };
    text.replacen('-', "−", 1).replace("e−", "e-")
}

/// `mean ± sd`: the mean with `digits` significant digits, the sd to the same decimal place
/// (or to its own first significant digit, where that is finer).
pub fn mean_sd(mean: f64, sd: f64, digits: usize) -> String {
    let m = sig(mean, digits);
    if m.contains('e') {
        return format!("{m} ± {}", sig(sd, 2));
    }
    let decimals = m.split_once('.').map_or(0, |(_, d)| d.len());
    let first = if sd > 0.0 {
        (-sd.log10().floor()).max(0.0) as usize
    } else {
        0
    };
    let sd_decimals = decimals.max(first);
    format!("{m} ± {sd:.sd_decimals$}")
}

/// A whole number (a count, a width, a step) without decimals.
pub fn integer(x: f64) -> String {
    format!("{x:.0}")
}

/// A percentage with a sign, e.g. "+0.10%", "−26.1%".
pub fn signed_percent(fraction: f64, digits: usize) -> String {
    let body = sig(100.0 * fraction.abs(), digits);
    let sign = if fraction < 0.0 { "−" } else { "+" };
    format!("{sign}{body}%")
}

/// A sentence a README states about a record, and whether the record bears it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The statement, as the README gives it.
    pub statement: String,
    /// Whether it holds for the record.
    pub holds: bool,
}

/// What an experiment renders from one of its records: named markdown blocks for the
/// READMEs, and the claims its README makes, checked.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    blocks: BTreeMap<String, String>,
    claims: Vec<Claim>,
}

impl Tables {
    /// Adds the block `name` (a markdown table, or text).
    pub fn block(&mut self, name: &str, text: impl Into<String>) -> &mut Self {
        self.blocks.insert(name.to_string(), text.into());
        self
    }

    /// Adds a claim; `holds` is what the record says.
    pub fn claim(&mut self, statement: impl Into<String>, holds: bool) -> &mut Self {
        self.claims.push(Claim {
            statement: statement.into(),
            holds,
        });
        self
    }

    /// The block `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.blocks.get(name).map(String::as_str)
    }

    /// The names of the blocks.
    pub fn names(&self) -> Vec<&str> {
        self.blocks.keys().map(String::as_str).collect()
    }

    /// The claims.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }
}

/// The first 7 hex digits of a commit, as git shows it.
pub(crate) fn short_revision(revision: &str) -> &str {
    &revision[..revision.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_the_readmes_write_them() {
        assert_eq!(sig(375.1234, 5), "375.12");
        assert_eq!(sig(0.0264, 3), "0.0264");
        assert_eq!(sig(-0.12120, 3), "−0.121");
        assert_eq!(sig(0.018236, 4), "0.01824");
        assert_eq!(sig(1.5e-5, 3), "1.50e-5");
        assert_eq!(sig(-1.5e-5, 3), "−1.50e-5");
        assert_eq!(sig(1758.0, 4), "1758");
        assert_eq!(sig(0.0, 4), "0");
        assert_eq!(signed_percent(-0.261, 3), "−26.1%");
        assert_eq!(signed_percent(0.001, 2), "+0.10%");
        assert_eq!(mean_sd(3.0137, 0.25657, 4), "3.014 ± 0.257");
        assert_eq!(mean_sd(19.106, 0.114, 4), "19.11 ± 0.11");
        assert_eq!(mean_sd(20.2, 0.23, 3), "20.2 ± 0.2");
        assert_eq!(mean_sd(0.0887, 0.00226, 3), "0.0887 ± 0.0023");
        assert_eq!(mean_sd(3.014, 0.0004, 4), "3.014 ± 0.0004");
        assert_eq!(integer(1758.0), "1758");
    }

    #[test]
    fn wall_times_are_recognised_by_name() {
        assert!(is_wall_time("wall_time_s"));
        assert!(is_wall_time("training_time_s"));
        assert!(is_wall_time("seconds"));
        assert!(!is_wall_time("steps"));
        assert!(is_data_file("summary.json") && is_data_file("a.csv"));
        assert!(!is_data_file("run.json") && !is_data_file("floor.png"));
    }
}
