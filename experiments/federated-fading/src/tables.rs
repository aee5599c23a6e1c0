//! The README's table and the losses under it, from a recorded run (`gaussmask records
//! tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, distinct, find, series_headings};
use gaussmask_nn::kappa_label;

/// `last-round`: per κ, the image task's test accuracy and the regression's test MSE at the
/// last round, for each number of clients K; `losses`: the training and test losses behind
/// it at the smallest K.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let cells = record.json("summary.json")?.array("cells")?;
    let kappas = distinct(&cells, "kappa")?;
    let clients = distinct(&cells, "clients")?;
    let last = |task: &str, kappa: f64, k: f64, key: &str| -> Result<Option<f64>, HarnessError> {
        find(
            &cells,
            &[("kappa", kappa), ("clients", k)],
            &[("task", task)],
        )
        .map(|c| c.get("last")?.f64(key))
        .transpose()
    };
    let k_labels: Vec<String> = clients.iter().map(|k| k.to_string()).collect();
    let mut head = vec!["κ".to_string()];
    for (task, what) in [("image", "test accuracy"), ("regression", "test MSE")] {
        head.extend(series_headings(
            &k_labels,
            |k| format!("{task}: {what} K = {k}"),
            |k| format!("K = {k}"),
        ));
    }
    let mut table = Markdown::new(&head);
    for &kappa in &kappas {
        let mut row = vec![kappa_label(kappa)];
        for (task, key) in [("image", "test_accuracy"), ("regression", "test_loss")] {
            for &k in &clients {
                row.push(last(task, kappa, k, key)?.map_or("–".into(), |v| format!("{v:.4}")));
            }
        }
        table.row(&row);
    }

    let k1 = clients.first().copied().unwrap_or(1.0);
    let at_k1 = |task: &str, key: &str, digits: usize| -> Result<String, HarnessError> {
        let mut values = Vec::new();
        for &kappa in &kappas {
            if let Some(v) = last(task, kappa, k1, key)? {
                values.push(format!("{v:.digits$}"));
            }
        }
        Ok(values.join(", "))
    };
    let kappa_list: Vec<String> = kappas.iter().map(|k| kappa_label(*k)).collect();
    let losses = format!(
        "Clean training loss of the regression (½Σ(f − y)²/n) at K = {k1}: {} for κ = {}; the \
         image task's clean training cross-entropy at K = {k1}: {} (test cross-entropy {}).",
        at_k1("regression", "train_loss", 4)?,
        kappa_list.join(", "),
        at_k1("image", "train_loss", 3)?,
        at_k1("image", "test_loss", 3)?,
    );
    let mut tables = Tables::default();
    tables.block("last-round", table.text());
    tables.block("losses", losses);
    Ok(tables)
}
