//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables};
use gaussmask_nn::kappa_label;

/// `last-round`: per κ, the image task's test accuracy and the regression's test MSE at the
/// last round, for each number of clients K.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let cells = record.json("summary.json")?.array("cells")?;
    let (mut kappas, mut clients): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for c in &cells {
        let (k, n) = (c.f64("kappa")?, c.f64("clients")?);
        if !kappas.contains(&k) {
            kappas.push(k);
        }
        if !clients.contains(&n) {
            clients.push(n);
        }
    }
    let mut head = vec!["κ".to_string()];
    for (task, what) in [("image", "test accuracy"), ("regression", "test MSE")] {
        for (i, k) in clients.iter().enumerate() {
            head.push(if i == 0 {
                format!("{task}: {what} K = {k}")
            } else {
                format!("K = {k}")
            });
        }
    }
    let mut table = Markdown::new(&head);
    for &kappa in &kappas {
        let mut row = vec![kappa_label(kappa)];
        for (task, key) in [("image", "test_accuracy"), ("regression", "test_loss")] {
            for &k in &clients {
                let cell = cells.iter().find(|c| {
                    c.str("task").is_ok_and(|t| t == task)
                        && c.f64("kappa").is_ok_and(|v| v == kappa)
                        && c.f64("clients").is_ok_and(|v| v == k)
                });
                row.push(match cell {
                    Some(c) => format!("{:.4}", c.get("last")?.f64(key)?),
                    None => "–".into(),
                });
            }
        }
        table.row(&row);
    }
    // The losses behind the table at the smallest K.
    let k1 = clients.first().copied().unwrap_or(1.0);
    let at_k1 = |task: &str, key: &str, digits: usize| -> Result<String, HarnessError> {
        let mut values = Vec::new();
        for &kappa in &kappas {
            if let Some(c) = cells.iter().find(|c| {
                c.str("task").is_ok_and(|t| t == task)
                    && c.f64("kappa").is_ok_and(|v| v == kappa)
                    && c.f64("clients").is_ok_and(|v| v == k1)
            }) {
                values.push(format!("{:.digits$}", c.get("last")?.f64(key)?));
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
