//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{
    Markdown, Record, Tables, distinct, distinct_text, find, mean_sd,
};
use gaussmask_nn::kappa_label;

/// `floors`: per κ, the clean-loss floor (mean ± sd over seeds) and the test MSE of each
/// resampling mode.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let modes = distinct_text(&rows, "mode")?;
    let mut head = vec!["κ".to_string()];
    head.extend(modes.iter().map(|m| format!("floor: {m}")));
    head.extend(modes.iter().map(|m| format!("test MSE: {m}")));
    let mut table = Markdown::new(&head);
    for kappa in distinct(&rows, "kappa")? {
        let (mut floors, mut mses) = (vec![kappa_label(kappa)], Vec::new());
        for mode in &modes {
            match find(&rows, &[("kappa", kappa)], &[("mode", mode)]) {
                Some(r) => {
                    floors.push(mean_sd(r.f64("floor")?, r.f64("floor_std")?, 3));
                    mses.push(mean_sd(r.f64("test_mse")?, r.f64("test_mse_std")?, 3));
                }
                None => {
                    floors.push("–".into());
                    mses.push("–".into());
                }
            }
        }
        floors.extend(mses);
        table.row(&floors);
    }
    let mut tables = Tables::default();
    tables.block("floors", table.text());
    Ok(tables)
}
