//! LiRA beside ML-Leaks: N models per (architecture, κ), each trained like the target on a
//! seeded half of target-train ∪ target-test, read at every training length of `epochs`;
//! each model in turn is the target and the others its shadows.

use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Unit};
use gaussmask_images::lira::{log_p, masked_phis, phis};
use gaussmask_images::membership::splits;
use gaussmask_images::{model_label, train_checkpointed};
use gaussmask_privacy::lira::{Reading, ReadingColumns, read_queries};
use gaussmask_train::classify::{ClassifierSpec, accuracy};
use serde::{Deserialize, Serialize};

use crate::{LIRA_SEED, MembershipConfig, Part};

/// What one LiRA model gives the attack after some epochs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiraEval {
    /// Training epochs done.
    pub epochs: usize,
    /// φ of every pool image, clean query.
    pub phi_clean: Vec<f64>,
    /// φ of every pool image, mean over the masked queries (the clean φ without a mask).
    pub phi_masked: Vec<f64>,
    /// Accuracy on the pool images it did not train on (mask off).
    pub test_accuracy: f64,
}

/// Trains LiRA's model `i` of architecture `m` at `kappa` on its half of the pool and reads it
/// after each training length of `c.epochs`.
pub(crate) fn lira_model(
    c: &MembershipConfig,
    unit: &Unit<(usize, f64, Part)>,
    m: usize,
    kappa: f64,
    i: usize,
    ctx: &RunContext,
) -> Result<Vec<LiraEval>, HarnessError> {
    let lira = c
        .lira
        .as_ref()
        .ok_or_else(|| HarnessError::run(format!("{}: a LiRA unit without [lira]", unit.key)))?;
    let splits = splits(&c.data)?;
    let pool = splits.target_train.concat(&splits.target_test);
    let member = c.lira_members(i);
    let (rows, held_out): (Vec<usize>, Vec<usize>) = (0..member.len()).partition(|&j| member[j]);
    let members = pool.subset(&rows);
    let model = &c.models[m];
    let spec = ClassifierSpec {
        model,
        train: &c.train,
        kappa,
        seed: c.seed + LIRA_SEED + i as u64,
    };
    let steps = c.train.steps_per_epoch(rows.len()) * c.train.epochs;
    let bar = ctx.progress(steps as u64, &unit.key);
    let device = ctx.device.clone().autodiff();
    let (_, evals) = train_checkpointed(
        ctx,
        &unit.key,
        spec,
        members.view(),
        &device,
        || bar.inc(1),
        |epoch, net, evals: &mut Vec<LiraEval>| {
            if c.epochs.contains(&epoch) {
                let lp = log_p(net, &pool, &ctx.device);
                let phi_clean = phis(&lp, &pool);
                let phi_masked = masked_phis(
                    net,
                    &pool,
                    &model.mask,
                    kappa,
                    lira.queries,
                    c.seed,
                    i,
                    &phi_clean,
                    &ctx.device,
                );
                // Argmax of the log-posteriors is argmax of the posteriors.
                let k = pool.classes;
                let p: Vec<f32> = held_out
                    .iter()
                    .flat_map(|&j| lp[j * k..(j + 1) * k].iter().map(|&l| l as f32))
                    .collect();
                let labels: Vec<u8> = held_out.iter().map(|&j| pool.labels[j]).collect();
                evals.push(LiraEval {
                    epochs: epoch,
                    phi_clean,
                    phi_masked,
                    test_accuracy: accuracy(&p, &labels, k),
                });
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(evals)
}

/// A LiRA model's evaluations, by (index into `models`, κ, model m).
pub(crate) type LiraModel = ((usize, f64, usize), Vec<LiraEval>);

/// One reading of LiRA against (architecture, κ, training length).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LiraRow {
    model: String,
    kappa: f64,
    epochs: usize,
    reading: Reading,
    /// Mean test accuracy of the cell's models (each on the pool images it did not train on).
    test_accuracy: f64,
    /// The ROC curve, of the online reading on masked queries only (what the figure shows).
    #[serde(skip)]
    roc: Vec<(f64, f64)>,
}

/// LiRA's four readings (online and offline, clean and masked queries) of every (architecture,
/// κ, training length), from the models' evaluations (`lira`: (architecture, κ, model) and
/// what the model gave).
pub(crate) fn read_lira(
    c: &MembershipConfig,
    lira: &[LiraModel],
) -> Result<Vec<LiraRow>, HarnessError> {
    let mut cells: Vec<(usize, f64)> = Vec::new();
    for ((m, kappa, _), _) in lira {
        if !cells.contains(&(*m, *kappa)) {
            cells.push((*m, *kappa));
        }
    }
    let mut out = Vec::new();
    for (m, kappa) in cells {
        let label = model_label(&c.models[m]);
        let models: Vec<&LiraModel> = lira
            .iter()
            .filter(|((a, k, _), _)| (*a, *k) == (m, kappa))
            .collect();
        let member: Vec<Vec<bool>> = models
            .iter()
            .map(|((_, _, i), _)| c.lira_members(*i))
            .collect();
        for &e in &c.epochs {
            let at: Vec<&LiraEval> = models
                .iter()
                .map(|((_, _, i), evals)| {
                    evals.iter().find(|v| v.epochs == e).ok_or_else(|| {
                        HarnessError::run(format!(
                            "{label} κ = {kappa} LiRA model {i}: no evaluation after {e} epochs"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            let clean: Vec<Vec<f64>> = at.iter().map(|v| v.phi_clean.clone()).collect();
            let masked: Vec<Vec<f64>> = at.iter().map(|v| v.phi_masked.clone()).collect();
            let accuracy = at.iter().map(|v| v.test_accuracy).sum::<f64>() / at.len() as f64;
            let (readings, roc) = read_queries(&clean, &masked, &member);
            for reading in readings {
                let roc = match (reading.query, reading.variant) {
                    ("masked", "online") => roc.clone(),
                    _ => Vec::new(),
                };
                out.push(LiraRow {
                    model: label.clone(),
                    kappa,
                    epochs: e,
                    reading,
                    test_accuracy: accuracy,
                    roc,
                });
            }
        }
    }
    Ok(out)
}

/// `lira.csv`'s columns before the reading's.
#[derive(Serialize)]
struct CellColumns<'a> {
    model: &'a str,
    kappa: f64,
    epochs: usize,
}

/// `lira.csv`'s column after the reading's.
#[derive(Serialize)]
struct AccuracyColumn {
    test_accuracy: f64,
}

/// `lira.csv`, a figure per architecture of TPR at 0.1% FPR against training length (online,
/// the stronger query per κ), the log-log ROC after the longest training, and a printed table.
pub(crate) fn write_lira(
    c: &MembershipConfig,
    rows: &[LiraRow],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let csv: Vec<_> = rows
        .iter()
        .map(|r| {
            let cell = CellColumns {
                model: &r.model,
                kappa: r.kappa,
                epochs: r.epochs,
            };
            let accuracy = AccuracyColumn {
                test_accuracy: r.test_accuracy,
            };
            (cell, ReadingColumns::from(&r.reading), accuracy)
        })
        .collect();
    ctx.write_csv("lira.csv", &csv)?;
    let longest = *c.epochs.last().expect("epochs is non-empty");
    let mut labels: Vec<&str> = Vec::new();
    for r in rows {
        if !labels.contains(&r.model.as_str()) {
            labels.push(&r.model);
        }
    }
    for label in labels {
        let of = |kappa: f64| {
            rows.iter().filter(move |r| {
                r.model == label && r.kappa == kappa && r.reading.variant == "online"
            })
        };
        let series = c
            .kappas
            .iter()
            .map(|&kappa| Series {
                label: format!("κ = {kappa}"),
                points: c
                    .epochs
                    .iter()
                    .filter_map(|&e| {
                        strongest(of(kappa).filter(|r| r.epochs == e))
                            .map(|r| (e as f64, r.reading.tpr_at_0_1pct.value))
                    })
                    .collect(),
                ..Series::default()
            })
            .collect();
        ctx.plot(
            &LinePlot {
                title: format!("{label}: LiRA (online) TPR at 0.1% FPR"),
                x_label: "training epochs".into(),
                y_label: "TPR at 0.1% FPR (chance: 0.001)".into(),
                log_y: true,
                series,
                legend_left: true,
                ..LinePlot::default()
            },
            &format!("lira_tpr_{label}"),
        )?;
        let curves = c
            .kappas
            .iter()
            .filter_map(|&kappa| {
                of(kappa)
                    .find(|r| r.epochs == longest && r.reading.query == "masked")
                    .map(|r| (format!("κ = {kappa}"), r.roc.clone()))
            })
            .collect();
        ctx.plot(
            &LinePlot::log_log_roc(
                &format!("{label}, {longest} epochs: LiRA (online, masked queries) ROC"),
                curves,
            ),
            &format!("lira_roc_{label}"),
        )?;
    }
    println!(
        "{:<12} {:>6} {:>7} {:>7}  {:>6} {:>10} {:>8}  {:>8}",
        "model", "kappa", "epochs", "query", "AUC", "TPR@0.1%", "TPR@1%", "test acc"
    );
    for r in rows.iter().filter(|r| r.reading.variant == "online") {
        println!(
            "{:<12} {:>6} {:>7} {:>7}  {:>6.3} {:>10.4} {:>8.4}  {:>8.3}",
            r.model,
            r.kappa,
            r.epochs,
            r.reading.query,
            r.reading.auc,
            r.reading.tpr_at_0_1pct.value,
            r.reading.tpr_at_1pct.value,
            r.test_accuracy
        );
    }
    Ok(())
}

/// Of some readings, the one that finds the most members at 0.1% FPR (the attacker's stronger
/// query).
fn strongest<'a>(rows: impl Iterator<Item = &'a LiraRow>) -> Option<&'a LiraRow> {
    rows.max_by(|a, b| {
        a.reading
            .tpr_at_0_1pct
            .value
            .total_cmp(&b.reading.tpr_at_0_1pct.value)
    })
}
