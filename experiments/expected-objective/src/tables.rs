//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig, signed_percent};
use gaussmask_nn::kappa_label;

/// `floors`: per κ, the floor GD reaches on each objective and the jitter of its last steps.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.items()?;
    let (mut objectives, mut kappas): (Vec<String>, Vec<f64>) = (Vec::new(), Vec::new());
    for r in &rows {
        let (o, k) = (r.str("objective")?, r.f64("kappa")?);
        if !objectives.contains(&o) {
            objectives.push(o);
        }
        if !kappas.contains(&k) {
            kappas.push(k);
        }
    }
    let mut head = vec!["κ".to_string()];
    head.extend(objectives.iter().map(|o| format!("{o} GD floor")));
    head.extend(objectives.iter().map(|o| format!("jitter {o}")));
    let mut table = Markdown::new(&head);
    for &k in &kappas {
        let mut floors = vec![kappa_label(k)];
        let mut jitters = Vec::new();
        for o in &objectives {
            let row = rows.iter().find(|r| {
                r.str("objective").is_ok_and(|v| v == *o) && r.f64("kappa").is_ok_and(|v| v == k)
            });
            match row {
                Some(r) => {
                    floors.push(sig(r.f64("floor")?, 5));
                    jitters.push(sig(r.f64("tail_jitter")?, 2));
                }
                None => {
                    floors.push("–".into());
                    jitters.push("–".into());
                }
            }
        }
        floors.extend(jitters);
        table.row(&floors);
    }
    // How the closed-form objectives' floors and jitter compare with masked GD's, per κ.
    let value = |o: &str, k: f64, key: &str| -> Result<Option<f64>, HarnessError> {
        rows.iter()
            .find(|r| {
                r.str("objective").is_ok_and(|v| v == o) && r.f64("kappa").is_ok_and(|v| v == k)
            })
            .map(|r| r.f64(key))
            .transpose()
    };
    let kappa_list: Vec<String> = kappas.iter().map(|k| kappa_label(*k)).collect();
    let mut gaps = Vec::new();
    let mut exact_within = true;
    for &k in &kappas {
        if let (Some(m), Some(e)) = (
            value("masked", k, "floor")?,
            value("expected-exact", k, "floor")?,
        ) {
            exact_within &= (e / m - 1.0).abs() <= 0.02;
        }
    }
    for (other, what) in [("expected-exact", "exact (A)"), ("proxy", "proxy (B)")] {
        let (mut floor, mut jitter) = (Vec::new(), Vec::new());
        for &k in &kappas {
            if let (Some(m), Some(o)) = (value("masked", k, "floor")?, value(other, k, "floor")?) {
                floor.push(signed_percent(o / m - 1.0, 2));
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
    let mut tables = Tables::default();
    tables.block("floors", table.text());
    tables.claim(
        "GD on the exact expected loss levels off within 2% of masked GD's floor at every κ",
        exact_within,
    );
    tables.block(
        "gaps",
        format!("At κ = {}: {}.", kappa_list.join(", "), gaps.join("; ")),
    );
    Ok(tables)
}
