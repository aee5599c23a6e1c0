//! `image-accuracy` (the paper's Fig. 4): test accuracy of image classifiers trained under the
//! Gaussian input mask, over κ, for an MLP and a CNN on Fashion-MNIST and MNIST. The mask acts
//! in training only; accuracy is measured on clean test images.

use gaussmask_data::images::ImageDataset;
use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit, mean_std};
use gaussmask_nn::image::ImageModelConfig;
use gaussmask_train::classify::{ClassifierSpec, ClassifyConfig};
use serde::{Deserialize, Serialize};

use gaussmask_images::{ImageDataConfig, model_label, prepare, test_accuracy, train_checkpointed};

mod tables;

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
    pub kappas: gaussmask_nn::KappaGrid,
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
    fn validate(&self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        require(
            !self.datasets.is_empty(),
            "datasets",
            "a non-empty list",
            "[]",
        )?;
        require_distinct("datasets", &self.datasets)?;
        require(!self.models.is_empty(), "models", "a non-empty list", "[]")?;
        let labels: Vec<String> = self.models.iter().map(model_label).collect();
        require_distinct("models (their labels)", &labels)?;
        self.data.validate()?;
        for &d in &self.datasets {
            gaussmask_images::check_dataset(d, self.data.path.as_deref())?;
        }
        for m in &self.models {
            // Shapes are checked against the smallest image the datasets have (28×28).
            m.validate([1, 28, 28])?;
        }
        Ok(self.train.validate("train")?)
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

/// One unit of work: one classifier trained.
#[derive(Clone, Debug)]
pub struct Training {
    /// Dataset.
    pub dataset: ImageDataset,
    /// Index into the config's models.
    pub model: usize,
    /// κ.
    pub kappa: f64,
    /// Seed.
    pub seed: u64,
}

/// Accuracy versus κ for image classifiers.
pub struct ImageAccuracy;

impl Study for ImageAccuracy {
    type Config = ImageAccuracyConfig;
    type Unit = Training;
    type Output = Cell;

    fn id(&self) -> &'static str {
        "image-accuracy"
    }

    fn about(&self) -> &'static str {
        "Fig. 4: test accuracy of MLP and CNN image classifiers trained under the mask, vs κ"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/image-accuracy.toml")
    }

    fn validate(&self, config: &mut ImageAccuracyConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &ImageAccuracyConfig) -> Vec<Unit<Training>> {
        let mut out = Vec::new();
        for &dataset in &c.datasets {
            for (model, m) in c.models.iter().enumerate() {
                let label = model_label(m);
                for &kappa in &c.kappas {
                    for s in 0..c.seeds as u64 {
                        let seed = c.seed + s;
                        out.push(Unit::new(
                            format!(
                                "{dataset}-{label}-k{}-s{seed}",
                                gaussmask_nn::kappa_label(kappa)
                            ),
                            Training {
                                dataset,
                                model,
                                kappa,
                                seed,
                            },
                        ));
                    }
                }
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &ImageAccuracyConfig,
        unit: &Unit<Training>,
        ctx: &RunContext,
    ) -> Result<Cell, HarnessError> {
        let Training {
            dataset,
            model,
            kappa,
            seed,
        } = unit.spec;
        let (train, test) = prepare(dataset, &c.data)?;
        let model = &c.models[model];
        let label = model_label(model);
        let per_run = c.train.steps_per_epoch(train.labels.len()) * c.train.epochs;
        let bar = ctx.progress(per_run as u64, &unit.key);
        let spec = ClassifierSpec {
            model,
            train: &c.train,
            kappa,
            seed,
        };
        let device = ctx.device.clone().autodiff();
        let (net, ()) = train_checkpointed(
            ctx,
            &unit.key,
            spec,
            train.view(),
            &device,
            || bar.inc(1),
            |_, _, _: &mut ()| Ok(()),
        )?;
        bar.finish_and_clear();
        let net = burn::module::Module::valid(&net);
        let test_accuracy = test_accuracy(&net, &test, &ctx.device);
        eprintln!("{dataset} {label} κ = {kappa} seed {seed}: test accuracy {test_accuracy:.4}");
        Ok(Cell {
            dataset,
            model: label,
            kappa,
            seed,
            test_accuracy,
        })
    }

    fn reduce(
        &self,
        c: &ImageAccuracyConfig,
        outputs: Vec<(Unit<Training>, Cell)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let cells: Vec<Cell> = outputs.into_iter().map(|(_, cell)| cell).collect();
        write_outputs(c, &cells, ctx)
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
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
    ctx.write_csv("accuracy.csv", cells)?;
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
