//! The README's tables, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables};
use gaussmask_nn::kappa_label;

/// `auc-<model>` per target model: per κ and training length, the attack's ROC-AUC and, in
/// brackets, the target's test accuracy.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("attack.csv")?;
    let mut tables = Tables::default();
    for (model, rows) in csv.group_by("model")? {
        let (mut kappas, mut epochs): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for &r in &rows {
            let (k, e) = (csv.f64(r, "kappa")?, csv.f64(r, "epochs")?);
            if !kappas.contains(&k) {
                kappas.push(k);
            }
            if !epochs.contains(&e) {
                epochs.push(e);
            }
        }
        let mut head = vec!["κ".to_string()];
        head.extend(epochs.iter().enumerate().map(|(i, e)| {
            if i == 0 {
                format!("{e} epochs")
            } else {
                format!("{e}")
            }
        }));
        let mut table = Markdown::new(&head);
        for &k in &kappas {
            let mut row = vec![kappa_label(k)];
            for &e in &epochs {
                let cell = rows.iter().find(|&&r| {
                    csv.f64(r, "kappa").is_ok_and(|v| v == k)
                        && csv.f64(r, "epochs").is_ok_and(|v| v == e)
                });
                row.push(match cell {
                    Some(&r) => format!(
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
