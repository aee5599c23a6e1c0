//! The README's tables, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, series_headings};
use gaussmask_nn::kappa_label;

/// `auc-<model>` per target model: per κ and training length, the attack's ROC-AUC and, in
/// brackets, the target's test accuracy.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("attack.csv")?;
    let mut tables = Tables::default();
    for (model, rows) in csv.group_by("model")? {
        let epochs = csv.distinct(&rows, "epochs")?;
        let labels: Vec<String> = epochs.iter().map(|e| e.to_string()).collect();
        let mut head = vec!["κ".to_string()];
        head.extend(series_headings(
            &labels,
            |e| format!("{e} epochs"),
            str::to_string,
        ));
        let mut table = Markdown::new(&head);
        for k in csv.distinct(&rows, "kappa")? {
            let mut row = vec![kappa_label(k)];
            for &e in &epochs {
                row.push(match csv.find(&rows, &[("kappa", k), ("epochs", e)]) {
                    Some(r) => format!(
                        "{:.3} ({:.3})",
                        csv.f64(r, "auc")?,
                        csv.f64(r, "target_test_accuracy")?
                    ),
                    None => "–".into(),
                });
            }
            table.row(&row);
        }
        tables.block(&format!("auc-{model}"), table.text());
    }
    Ok(tables)
}
