//! The README's tables, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Csv, Markdown, Record, Tables};
use gaussmask_images::epoch_columns;
use gaussmask_nn::kappa_label;

/// `auc-<model>` per target model: per κ and training length, the attack's ROC-AUC and, in
/// brackets, the target's test accuracy. `lira-<model>` per model LiRA attacked: per κ and
/// training length, online LiRA's TPR at 0.1% FPR at the stronger query (marked ᵐ where the
/// masked copies are stronger than the clean image), with its AUC in brackets.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("attack.csv")?;
    let mut tables = Tables::default();
    for (model, rows) in csv.group_by("model")? {
        let table = kappa_by_epochs(&csv, &rows, |k, e| {
            let Some(r) = csv.find(&rows, &[("kappa", k), ("epochs", e)]) else {
                return Ok("–".into());
            };
            Ok(format!(
                "{:.3} ({:.3})",
                csv.f64(r, "auc")?,
                csv.f64(r, "target_test_accuracy")?
            ))
        })?;
        tables.block(&format!("auc-{model}"), table);
    }
    let lira = record.csv("lira.csv")?;
    for (model, rows) in lira.group_by("model")? {
        let online: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&r| lira.str(r, "variant").ok() == Some("online"))
            .collect();
        let table = kappa_by_epochs(&lira, &online, |k, e| {
            let mut best: Option<(f64, usize)> = None;
            for &r in &online {
                if lira.f64(r, "kappa")? == k && lira.f64(r, "epochs")? == e {
                    let tpr = lira.f64(r, "tpr_0_1pct")?;
                    if best.is_none_or(|(b, _)| tpr > b) {
                        best = Some((tpr, r));
                    }
                }
            }
            let Some((tpr, r)) = best else {
                return Ok("–".into());
            };
            let masked = lira.str(r, "query")? == "masked" && k != 0.0;
            Ok(format!(
                "{tpr:.4}{} ({:.3})",
                if masked { "ᵐ" } else { "" },
                lira.f64(r, "auc")?
            ))
        })?;
        tables.block(&format!("lira-{model}"), table);
    }
    Ok(tables)
}

/// A table of `rows` of `csv` with a line per κ and a column per training length, each cell
/// `cell(κ, epochs)`.
fn kappa_by_epochs(
    csv: &Csv,
    rows: &[usize],
    cell: impl Fn(f64, f64) -> Result<String, HarnessError>,
) -> Result<String, HarnessError> {
    let (epochs, headings) = epoch_columns(csv, rows)?;
    let mut head = vec!["κ".to_string()];
    head.extend(headings);
    let mut table = Markdown::new(&head);
    for k in csv.distinct(rows, "kappa")? {
        let mut row = vec![kappa_label(k)];
        for &e in &epochs {
            row.push(cell(k, e)?);
        }
        table.row(&row);
    }
    Ok(table.text())
}
