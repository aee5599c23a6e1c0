//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{
    Markdown, Record, Tables, distinct, find, mean_sd, series_headings, sig,
};
use gaussmask_nn::kappa_label;

/// `floors`: per κ, the floor (mean ± sd over seeds) and its excess over κ = 0 at each depth,
/// and the fitted κ-exponent of the excess floor with its 95% interval.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let summary = record.json("summary.json")?;
    let rows = summary.array("rows")?;
    let fits = summary.array("fits")?;
    let depths = distinct(&rows, "depth")?;
    let labels: Vec<String> = depths.iter().map(|d| d.to_string()).collect();
    let mut head = vec!["κ".to_string()];
    for what in ["floor", "excess"] {
        head.extend(series_headings(
            &labels,
            |d| format!("{what}, depth {d}"),
            |d| format!("depth {d}"),
        ));
    }
    let mut table = Markdown::new(&head);
    for k in distinct(&rows, "kappa")? {
        let mut row = vec![kappa_label(k)];
        let (mut floors, mut excess) = (Vec::new(), Vec::new());
        for &d in &depths {
            match find(&rows, &[("depth", d), ("kappa", k)], &[]) {
                Some(r) => {
                    let (mean, sd) = r.pair("floor")?;
                    floors.push(mean_sd(mean, sd, 4));
                    excess.push(sig(r.f64("excess")?, 3));
                }
                None => {
                    floors.push("–".into());
                    excess.push("–".into());
                }
            }
        }
        row.extend(floors);
        row.extend(excess);
        table.row(&row);
    }
    let mut exponents = vec!["κ-exponent [95% CI]".to_string()];
    for &d in &depths {
        let fit = find(&fits, &[("depth", d)], &[])
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
