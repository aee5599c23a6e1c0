//! Experiment configs: TOML files, the `[smoke]` section, `--set key=value` overrides, and typed
//! parsing that rejects unknown keys.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::error::HarnessError;

/// Name of the table holding the overrides of `--smoke`.
pub const SMOKE: &str = "smoke";

/// Parses config text; `origin` names the file in errors.
pub fn parse_text(text: &str, origin: &str) -> Result<Table, HarnessError> {
    text.parse::<Table>()
        .map_err(|e| HarnessError::input(format!("{origin}: invalid TOML: {}", e.message())))
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<Table, HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::io("read config file", path, &e))?;
    parse_text(&text, &path.display().to_string())
}

/// Removes the `[smoke]` table and, when `smoke` is set, merges it over the rest.
pub fn resolve_smoke(mut table: Table, smoke: bool) -> Result<Table, HarnessError> {
    let overrides = match table.remove(SMOKE) {
        None => Table::new(),
        Some(Value::Table(t)) => t,
        Some(_) => return Err(HarnessError::input("config: `smoke` must be a table")),
    };
    if smoke {
        merge(&mut table, overrides);
    }
    Ok(table)
}

fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies one `key.path=value` override. The value is read as TOML (`0.5`, `[0, 1]`, `true`,
/// `"x"`) and as a bare string when it is not valid TOML.
pub fn apply_set(table: &mut Table, assignment: &str) -> Result<(), HarnessError> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| HarnessError::input(format!("--set {assignment}: expected key=value")))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(HarnessError::input(format!(
            "--set {assignment}: empty key"
        )));
    }
    let value = format!("v = {}", raw.trim())
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.trim().to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cursor = table;
    for part in parts {
        let entry = cursor
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cursor = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(HarnessError::input(format!(
                    "--set {assignment}: `{part}` is not a table"
                )));
            }
        };
    }
    cursor.insert(last.to_string(), value);
    Ok(())
}

/// Deserializes a resolved table into an experiment's config type.
pub fn parse<T: DeserializeOwned>(table: &Table) -> Result<T, HarnessError> {
    // Going through text keeps toml's messages, which name the key.
    let text = toml::to_string(table).map_err(|e| HarnessError::input(format!("config: {e}")))?;
    toml::from_str::<T>(&text).map_err(|e| {
        let path = key_at(&text, e.span());
        let at = path.map(|p| format!(" (at `{p}`)")).unwrap_or_default();
        HarnessError::input(format!("config: {}{at}", e.message()))
    })
}

/// The dotted key whose line contains `span`, for error messages.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start;
    let mut table = String::new();
    let mut offset = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        if start >= offset && start <= offset + line.len() {
            let key = trimmed.split('=').next()?.trim();
            if trimmed.starts_with('[') {
                return Some(table);
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        offset += line.len() + 1;
    }
    None
}

/// Validation helper: `Err` with a message naming `field` unless `ok`.
pub fn require(
    ok: bool,
    field: &str,
    rule: &str,
    got: impl std::fmt::Display,
) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{field} must be {rule}, got {got}"))
    }
}

pub use gaussmask_data::memory::{f64_bytes, physical_memory, require_memory};

/// The base seed of a resolved config (`seed`, 0 when absent).
pub fn seed_of(table: &Table) -> u64 {
    table
        .get("seed")
        .and_then(Value::as_integer)
        .unwrap_or(0)
        .max(0) as u64
}

/// Checks that the list `field` names each value once (its values key units of work).
pub fn require_distinct<T: PartialEq + std::fmt::Display>(
    field: &str,
    values: &[T],
) -> Result<(), String> {
    match (1..values.len()).find(|&i| values[..i].contains(&values[i])) {
        Some(i) => Err(format!(
            "{field} must be distinct values, got {} twice",
            values[i]
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        width: usize,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        kappas: Vec<f64>,
        model: Inner,
    }

    #[test]
    fn smoke_and_set_override_in_order() {
        let t = parse_text(
            "kappas = [0.0, 1.0]\n[model]\nwidth = 100\n[smoke]\nkappas = [0.5]\n[smoke.model]\nwidth = 3\n",
            "demo",
        )
        .unwrap();
        let mut t = resolve_smoke(t, true).unwrap();
        apply_set(&mut t, "model.width=7").unwrap();
        let d: Demo = parse(&t).unwrap();
        assert_eq!(d.kappas, vec![0.5]);
        assert_eq!(d.model.width, 7);
    }

    #[test]
    fn unknown_key_is_named() {
        let mut t = parse_text("kappas = [0.0]\n[model]\nwidth = 1\n", "demo").unwrap();
        apply_set(&mut t, "model.widht=3").unwrap();
        let err = parse::<Demo>(&t).unwrap_err();
        assert!(err.message().contains("widht"), "{err}");
        assert!(!err.message().contains('\n'));
    }
}
