//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, mean_sd, sig};
use gaussmask_nn::kappa_label;

/// `finals`: per network and κ, the test loss at step 0 and at the end, the distance of
/// B = I + W from I + W*, and the potential g at the start and the end.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let mut table = Markdown::new(&[
        "network",
        "κ",
        "test loss at 0",
        "final test loss",
        "final ‖B − (I + W*)‖_F",
        "g: start → end",
    ]);
    for f in record.json("summary.json")?.array("finals")? {
        let (loss, loss_sd) = f.pair("test_loss")?;
        let (distance, distance_sd) = f.pair("distance")?;
        let (start, end) = f.pair("potential")?;
        table.row(&[
            f.str("kind")?,
            kappa_label(f.f64("kappa")?),
            sig(f.f64("initial_test_loss")?, 3),
            mean_sd(loss, loss_sd, 3),
            mean_sd(distance, distance_sd, 4),
            format!("{} → {}", sig(start, 3), sig(end, 3)),
        ]);
    }
    let mut tables = Tables::default();
    tables.block("finals", table.text());
    Ok(tables)
}
