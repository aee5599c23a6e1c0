//! The run directory of `gaussmask train`: `metrics.csv`, `summary.csv`, the learning curves,
//! and the models with everything `predict` needs.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bool, Int, Tensor};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::provenance::sha256_hex;
use gaussmask_harness::{HarnessError, RunContext, mean_std};
use gaussmask_train::classify::{load_model_bytes, model_bytes};

use crate::config::Task;
use crate::job::{Job, MetricRow, TrainedModel};
use crate::saved::{MANIFEST, SavedModel, model_dir};

/// Writes the run directory from the trained models `done` (κ, seed, model), in unit order.
pub(crate) fn write_results(
    job: &Job,
    ctx: &RunContext,
    done: &[(f64, u64, TrainedModel)],
) -> Result<(), HarnessError> {
    let task = job.config.data.task;
    let metric = task.metric();
    // metrics.csv: every logged evaluation of every model.
    let header: &[&str] = match task {
        Task::Regression => &["kappa", "seed", "epoch", "step", "train_mse", "val_mse"],
        Task::Classification => &[
            "kappa",
            "seed",
            "epoch",
            "step",
            "train_loss",
            "val_loss",
            "train_accuracy",
            "val_accuracy",
        ],
    };
    let mut metrics = csv_writer(header);
    for (_, _, unit) in done {
        for r in &unit.rows {
            let mut cells = vec![
                r.kappa.to_string(),
                r.seed.to_string(),
                r.epoch.to_string(),
                r.step.to_string(),
                cell(r.train_loss),
                cell(r.val_loss),
            ];
            if task == Task::Classification {
                cells.extend([cell(r.train_metric), cell(r.val_metric)]);
            }
            write_row(&mut metrics, &cells)?;
        }
    }
    ctx.write("metrics.csv", finish(metrics)?)?;

    // summary.csv: the final validation (and test) metric per κ, over the seeds.
    let has_test = done.iter().any(|(_, _, u)| u.test.is_some());
    let mut header = vec![
        "kappa".to_string(),
        "seeds".to_string(),
        format!("val_{metric}_mean"),
        format!("val_{metric}_std"),
        format!("train_{metric}_mean"),
    ];
    if has_test {
        header.extend([format!("test_{metric}_mean"), format!("test_{metric}_std")]);
    }
    let mut summary = csv_writer(&header.iter().map(String::as_str).collect::<Vec<_>>());
    let mut table = Vec::new();
    let mut models = Vec::new();
    for &kappa in &job.config.kappas {
        let of_kappa: Vec<&TrainedModel> = done
            .iter()
            .filter(|(k, _, _)| *k == kappa)
            .map(|(_, _, u)| u)
            .collect();
        let last = |f: fn(&MetricRow) -> f64| -> Vec<f64> {
            of_kappa
                .iter()
                .map(|u| f(u.rows.last().expect("a model logs its last step")))
                .collect()
        };
        let (val, val_sd) = mean_std(&last(|r| r.val_metric));
        let (train, _) = mean_std(&last(|r| r.train_metric));
        let mut cells = vec![
            kappa.to_string(),
            of_kappa.len().to_string(),
            cell(val),
            cell(val_sd),
            cell(train),
        ];
        let test: Vec<f64> = of_kappa
            .iter()
            .filter_map(|u| u.test.map(|t| t.1))
            .collect();
        let (test_mean, test_sd) = mean_std(&test);
        if has_test {
            cells.extend([cell(test_mean), cell(test_sd)]);
        }
        write_row(&mut summary, &cells)?;
        table.push((kappa, train, val, val_sd, has_test.then_some(test_mean)));
    }
    ctx.write("summary.csv", finish(summary)?)?;
    if let Some(privacy) = &job.privacy {
        ctx.write_json("privacy.json", privacy)?;
    }

    // The models, and the manifest predict reads.
    for (kappa, seed, unit) in done {
        let dir = model_dir(*kappa, *seed);
        let net = load_model_bytes(job.network(*kappa, *seed, &ctx.device), &unit.record)
            .map_err(|e| HarnessError::run(format!("{dir}: {e}")))?
            .map(&mut NumberParams(0));
        let record = model_bytes(&net).map_err(|e| HarnessError::run(format!("{dir}: {e}")))?;
        // One metadata entry: safetensors keeps them in a hash map, so several would come out
        // in a different order in every process.
        let mut store = SafetensorsStore::from_bytes(None)
            .clear_metadata()
            .metadata("producer", concat!("gaussmask ", env!("CARGO_PKG_VERSION")));
        net.valid()
            .save_into(&mut store)
            .map_err(|e| HarnessError::run(format!("{dir}/model.safetensors: {e}")))?;
        let tensors = store
            .get_bytes()
            .map_err(|e| HarnessError::run(format!("{dir}/model.safetensors: {e}")))?;
        let sha256 = [("model.bpk", &record), ("model.safetensors", &tensors)]
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), sha256_hex(bytes)))
            .collect();
        ctx.write(&format!("{dir}/model.bpk"), record)?;
        ctx.write(&format!("{dir}/model.safetensors"), tensors)?;
        let last = unit.rows.last().expect("a model logs its last step");
        models.push(SavedModel {
            kappa: *kappa,
            seed: *seed,
            dir,
            val_metric: last.val_metric,
            test_metric: unit.test.map(|t| t.1),
            sha256,
        });
    }
    let manifest = job.manifest(ctx.dtype.to_string(), metric, models);
    ctx.write_json(MANIFEST, &manifest)?;
    ctx.plot(&learning_curves(job, done, metric), "learning_curve")?;

    println!(
        "{:>8} {:>14} {:>14} {:>12}{}",
        "kappa",
        format!("train {metric}"),
        format!("val {metric}"),
        "val sd",
        if has_test {
            format!(" {:>14}", format!("test {metric}"))
        } else {
            String::new()
        }
    );
    for (kappa, train, val, sd, test) in table {
        println!(
            "{kappa:>8} {train:>14.4} {val:>14.4} {sd:>12.4}{}",
            test.map(|t| format!(" {t:>14.4}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// Validation (solid) and training (dashed) metric against epochs, the mean over seeds, one
/// colour per κ.
fn learning_curves(job: &Job, done: &[(f64, u64, TrainedModel)], metric: &str) -> LinePlot {
    let mut series = Vec::new();
    for (i, &kappa) in job.config.kappas.iter().enumerate() {
        let units: Vec<&TrainedModel> = done
            .iter()
            .filter(|(k, _, _)| *k == kappa)
            .map(|(_, _, u)| u)
            .collect();
        let mean_of = |f: fn(&MetricRow) -> f64| -> Vec<(f64, f64)> {
            (0..units[0].rows.len())
                .map(|j| {
                    let values: Vec<f64> = units.iter().map(|u| f(&u.rows[j])).collect();
                    (units[0].rows[j].epoch, mean_std(&values).0)
                })
                .collect()
        };
        if job.prepared.validation.n > 0 {
            series.push(Series {
                label: format!("κ = {kappa} validation"),
                points: mean_of(|r| r.val_metric),
                color: Some(i),
                ..Series::default()
            });
        }
        series.push(Series {
            label: format!("κ = {kappa} training"),
            points: mean_of(|r| r.train_metric),
            dashed: true,
            color: Some(i),
            ..Series::default()
        });
    }
    LinePlot {
        title: format!(
            "{} on {} ({}, clean inputs)",
            metric, job.loaded.target, job.config.model.kind
        ),
        x_label: "epoch".into(),
        y_label: metric.into(),
        log_y: metric == "mse",
        series,
        ..LinePlot::default()
    }
}

/// Gives the parameters the ids 1, 2, … in visiting order: Burn draws a random id for each
/// parameter and records it, so without this the same model would be different bytes in every
/// process (and a resumed run's models would differ from an uninterrupted run's).
struct NumberParams(u64);

impl NumberParams {
    fn next(&mut self) -> ParamId {
        self.0 += 1;
        ParamId::from(self.0)
    }
}

impl ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }
}

pub(crate) fn cell(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        v.to_string()
    }
}

pub(crate) fn csv_writer(header: &[&str]) -> csv::Writer<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("writing to memory");
    w
}

pub(crate) fn write_row(
    w: &mut csv::Writer<Vec<u8>>,
    cells: &[String],
) -> Result<(), HarnessError> {
    w.write_record(cells)
        .map_err(|e| HarnessError::run(format!("cannot write a CSV row: {e}")))
}

pub(crate) fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, HarnessError> {
    w.into_inner()
        .map_err(|e| HarnessError::run(format!("cannot write a CSV table: {e}")))
}
