//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig};

/// `errors`: the largest deviation of the exact σ̃ and of the proxy σ̂ from Monte Carlo, in
/// absolute terms and in standard errors.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let s = record.json("summary.json")?;
    let mut table = Markdown::new(&[
        String::new(),
        "max abs error vs MC".into(),
        format!(
            "max error in standard errors ({} points)",
            s.f64("points_in_se")?
        ),
    ]);
    for (name, key) in [("exact σ̃", "exact"), ("proxy σ̂", "proxy")] {
        table.row(&[
            name.to_string(),
            sig(s.f64(&format!("max_abs_error_{key}"))?, 3),
            sig(s.f64(&format!("max_error_in_se_{key}"))?, 3),
        ]);
    }
    let mut tables = Tables::default();
    tables.block("errors", table.text());
    Ok(tables)
}
