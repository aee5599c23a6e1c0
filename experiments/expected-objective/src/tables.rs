//! The README's table and the comparison below it, from a recorded run (`gaussmask records
//! tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{
    Markdown, Record, Tables, distinct, distinct_text, find, sig, signed_percent,
};
use gaussmask_nn::kappa_label;

/// `floors`: per κ, the floor GD reaches on each objective and the jitter of its last steps;
/// `gaps`: the closed-form objectives against masked GD.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.items()?;
    let objectives = distinct_text(&rows, "objective")?;
    let kappas = distinct(&rows, "kappa")?;
    let value = |o: &str, k: f64, key: &str| -> Result<Option<f64>, HarnessError> {
        find(&rows, &[("kappa", k)], &[("objective", o)])
            .map(|r| r.f64(key))
            .transpose()
    };
    let mut head = vec!["κ".to_string()];
    head.extend(objectives.iter().map(|o| format!("{o} GD floor")));
    head.extend(objectives.iter().map(|o| format!("jitter {o}")));
    let mut table = Markdown::new(&head);
    for &k in &kappas {
        let mut floors = vec![kappa_label(k)];
        let mut jitters = Vec::new();
        for o in &objectives {
            let text = |v: Option<f64>, digits| v.map_or("–".to_string(), |v| sig(v, digits));
            floors.push(text(value(o, k, "floor")?, 5));
            jitters.push(text(value(o, k, "tail_jitter")?, 2));
        }
        floors.extend(jitters);
        table.row(&floors);
    }

    // How the closed-form objectives' floors and jitter compare with masked GD's, per κ.
    let mut gaps = Vec::new();
    let mut exact_within = true;
    for (other, what) in [("expected-exact", "exact (A)"), ("proxy", "proxy (B)")] {
        let (mut floor, mut jitter) = (Vec::new(), Vec::new());
        for &k in &kappas {
            if let (Some(m), Some(o)) = (value("masked", k, "floor")?, value(other, k, "floor")?) {
                floor.push(signed_percent(o / m - 1.0, 2));
                if other == "expected-exact" {
                    exact_within &= (o / m - 1.0).abs() <= 0.02;
                }
            }
            if let (Some(m), Some(o)) = (
                value("masked", k, "tail_jitter")?,
                value(other, k, "tail_jitter")?,
            ) {
                jitter.push(format!("{}×", sig(m / o, 2)));
            }
        }
        if !floor.is_empty() {
            gaps.push(format!(
                "GD on {what} levels off {} from masked GD's floor with {} less jitter",
                floor.join(", "),
                jitter.join(", ")
            ));
        }
    }
    let kappa_list: Vec<String> = kappas.iter().map(|k| kappa_label(*k)).collect();
    let mut tables = Tables::default();
    tables.block("floors", table.text());
    tables.block(
        "gaps",
        format!("At κ = {}: {}.", kappa_list.join(", "), gaps.join("; ")),
    );
    tables.claim(
        "GD on the exact expected loss levels off within 2% of masked GD's floor at every κ",
        exact_within,
    );
    Ok(tables)
}
