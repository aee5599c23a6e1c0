//! `image-accuracy` (the paper's Fig. 4): test accuracy of image classifiers trained under the
//! Gaussian input mask, over κ, for an MLP and a CNN on Fashion-MNIST and MNIST. The mask acts
//! in training only; accuracy is measured on clean test images.

use gaussmask_data::images::ImageDataset;
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext, mean_std};
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_train::classify::{ClassifierSpec, ClassifyConfig};
use serde::{Deserialize, Serialize};
use toml::Table;

use gaussmask_images::{ImageDataConfig, model_label, prepare, test_accuracy, train_checkpointed};

/// The experiment's config (`configs/image-accuracy.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageAccuracyConfig {
    /// Base seed: seed s of a cell is `seed + s`.
    #[serde(default)]
    pub seed: u64,
    /// Seeds per (dataset, model, κ).
    pub seeds: usize,
    /// Mask strengths.
    pub kappas: Vec<f64>,
    /// Datasets.
    pub datasets: Vec<ImageDataset>,
    /// Images used and their normalization.
    pub data: ImageDataConfig,
    /// The models compared.
    pub models: Vec<ImageModelConfig>,
    /// How each is trained.
    pub train: ClassifyConfig,
}

impl ImageAccuracyConfig {
    fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let c: Self = parse(table)?;
        let check = || -> Result<(), String> {
            require(c.seeds >= 1, "seeds", "≥ 1", c.seeds)?;
            gaussmask_images::check_kappas(&c.kappas)?;
            require(!c.datasets.is_empty(), "datasets", "a non-empty list", "[]")?;
            require(!c.models.is_empty(), "models", "a non-empty list", "[]")?;
            c.data.validate()?;
            for &d in &c.datasets {
                gaussmask_images::check_dataset(d, c.data.path.as_deref())?;
            }
            for m in &c.models {
                // Shapes are checked against the smallest image the datasets have (28×28).
                m.validate([1, 28, 28])?;
            }
            c.train.validate("train")
        };
        check().map_err(HarnessError::input)?;
        Ok(c)
    }
}

/// One trained classifier.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Dataset.
    pub dataset: ImageDataset,
    /// Model label.
    pub model: String,
    /// κ.
    pub kappa: f64,
    /// Seed.
    pub seed: u64,
    /// Clean test accuracy.
    pub test_accuracy: f64,
}

/// Accuracy versus κ for image classifiers.
pub struct ImageAccuracy;

impl Experiment for ImageAccuracy {
    fn id(&self) -> &'static str {
        "image-accuracy"
    }

    fn about(&self) -> &'static str {
        "Fig. 4: test accuracy of MLP and CNN image classifiers trained under the mask, vs κ"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/image-accuracy.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        ImageAccuracyConfig::from_table(config).map(|_| ())
    }

    fn checkpoints(&self) -> bool {
        true
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let c = ImageAccuracyConfig::from_table(config)?;
        let device = ctx.device.clone().autodiff();
        let mut cells = Vec::new();
        for &dataset in &c.datasets {
            let (train, test) = prepare(dataset, &c.data)?;
            let per_run = c.train.steps_per_epoch(train.labels.len()) * c.train.epochs;
            let runs = c.models.len() * c.kappas.len() * c.seeds;
            let bar = ctx.progress((per_run * runs) as u64, &dataset.to_string());
            let mut done = 0u64;
            for model in &c.models {
                let label = model_label(model);
                for &kappa in &c.kappas {
                    for s in 0..c.seeds as u64 {
                        let seed = c.seed + s;
                        let key = format!("{dataset}-{label}-k{kappa}-s{seed}");
                        let cell = ctx.checkpoints.unit(&key, || {
                            let spec = ClassifierSpec {
                                model,
                                train: &c.train,
                                kappa,
                                seed,
                            };
                            let (model, ()) = train_checkpointed(
                                ctx,
                                &key,
                                spec,
                                train.view(),
                                &device,
                                || bar.inc(1),
                                |_, _, _: &mut ()| Ok(()),
                            )?;
                            let net = burn::module::Module::valid(&model);
                            Ok(Cell {
                                dataset,
                                model: label.clone(),
                                kappa,
                                seed,
                                test_accuracy: test_accuracy(&net, &test, &ctx.device),
                            })
                        })?;
                        done += 1;
                        bar.set_position(done * per_run as u64);
                        eprintln!(
                            "{dataset} {label} κ = {kappa} seed {seed}: test accuracy {:.4}",
                            cell.test_accuracy
                        );
                        cells.push(cell);
                    }
                }
            }
            bar.finish_and_clear();
        }
        write_outputs(&c, &cells, ctx)
    }
}

/// Mean and std of test accuracy per (dataset, model, κ).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Dataset.
    pub dataset: ImageDataset,
    /// Model label.
    pub model: String,
    /// κ.
    pub kappa: f64,
    /// Mean test accuracy over seeds.
    pub accuracy: f64,
    /// Its standard deviation.
    pub accuracy_std: f64,
    /// Seeds.
    pub seeds: usize,
}

fn summarize(cells: &[Cell]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for cell in cells {
        if rows
            .iter()
            .any(|r| r.dataset == cell.dataset && r.model == cell.model && r.kappa == cell.kappa)
        {
            continue;
        }
        let acc: Vec<f64> = cells
            .iter()
            .filter(|o| o.dataset == cell.dataset && o.model == cell.model && o.kappa == cell.kappa)
            .map(|o| o.test_accuracy)
            .collect();
        let (accuracy, accuracy_std) = mean_std(&acc);
        rows.push(Row {
            dataset: cell.dataset,
            model: cell.model.clone(),
            kappa: cell.kappa,
            accuracy,
            accuracy_std,
            seeds: acc.len(),
        });
    }
    rows
}

fn write_outputs(
    c: &ImageAccuracyConfig,
    cells: &[Cell],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Csv::new(&["dataset", "model", "kappa", "seed", "test_accuracy"]);
    for cell in cells {
        csv.row(&[
            cell.dataset.to_string(),
            cell.model.clone(),
            cell.kappa.to_string(),
            cell.seed.to_string(),
            cell.test_accuracy.to_string(),
        ]);
    }
    ctx.write("accuracy.csv", csv.into_bytes())?;
    let rows = summarize(cells);
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "wall_time_s": ctx.elapsed().as_secs_f64() }),
    )?;
    for &dataset in &c.datasets {
        let series = c
            .models
            .iter()
            .map(|m| {
                let label = model_label(m);
                let mine: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.dataset == dataset && r.model == label)
                    .collect();
                Series {
                    points: mine.iter().map(|r| (r.kappa, r.accuracy)).collect(),
                    band: Some(
                        mine.iter()
                            .map(|r| (r.accuracy - r.accuracy_std, r.accuracy + r.accuracy_std))
                            .collect(),
                    ),
                    label,
                    ..Series::default()
                }
            })
            .collect();
        let plot = LinePlot {
            title: format!("{dataset}: clean test accuracy of models trained under the mask"),
            x_label: "κ".into(),
            y_label: "test accuracy (mean ± std over seeds)".into(),
            series,
            ..LinePlot::default()
        };
        ctx.plot(&plot, &format!("accuracy_{dataset}"))?;
    }
    println!(
        "{:<14} {:<12} {:>6}  {:>17}",
        "dataset", "model", "kappa", "test accuracy"
    );
    for r in &rows {
        println!(
            "{:<14} {:<12} {:>6}  {:>8.4} ± {:<6.4}",
            r.dataset.to_string(),
            r.model,
            r.kappa,
            r.accuracy,
            r.accuracy_std
        );
    }
    Ok(())
}
