//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Json, Markdown, Record, Tables, mean_sd, sig};
use gaussmask_nn::kappa_label;

/// `floors`: per κ, the floor (mean ± sd over seeds) and its excess over κ = 0 at each depth,
/// and the fitted κ-exponent of the excess floor with its 95% interval.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let summary = record.json("summary.json")?;
    let rows = summary.array("rows")?;
    let fits = summary.array("fits")?;
    let (mut depths, mut kappas): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for r in &rows {
        let (d, k) = (r.f64("depth")?, r.f64("kappa")?);
        if !depths.contains(&d) {
            depths.push(d);
        }
        if !kappas.contains(&k) {
            kappas.push(k);
        }
    }
    let mut head = vec!["κ".to_string()];
    for what in ["floor", "excess"] {
        for (i, d) in depths.iter().enumerate() {
            head.push(if i == 0 {
                format!("{what}, depth {d}")
            } else {
                format!("depth {d}")
            });
        }
    }
    let mut table = Markdown::new(&head);
    let cell = |d: f64, k: f64| -> Option<&Json> {
        rows.iter()
            .find(|r| r.f64("depth").is_ok_and(|v| v == d) && r.f64("kappa").is_ok_and(|v| v == k))
    };
    for &k in &kappas {
        let mut row = vec![kappa_label(k)];
        for &d in &depths {
            row.push(match cell(d, k) {
                Some(r) => {
                    let (mean, sd) = r.pair("floor")?;
                    mean_sd(mean, sd, 4)
                }
                None => "–".into(),
            });
        }
        for &d in &depths {
            row.push(match cell(d, k) {
                Some(r) => sig(r.f64("excess")?, 3),
                None => "–".into(),
            });
        }
        table.row(&row);
    }
    let mut exponents = vec!["κ-exponent [95% CI]".to_string()];
    for &d in &depths {
        let fit = fits
            .iter()
            .find(|f| f.f64("depth").is_ok_and(|v| v == d))
            .map(|f| f.get("fit"))
            .transpose()?;
        exponents.push(match fit {
            Some(fit) => {
                let (lo, hi) = fit.pair("ci95")?;
                format!("{:.2} [{lo:.2}, {hi:.2}]", fit.f64("slope")?)
            }
            None => "–".into(),
        });
    }
    exponents.extend(depths.iter().map(|_| String::new()));
    table.row(&exponents);
    let mut tables = Tables::default();
    tables.block("floors", table.text());
    Ok(tables)
}
