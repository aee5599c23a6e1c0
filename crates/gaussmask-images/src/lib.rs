//! What the image experiments share: the dataset section of their configs, loading and
//! normalizing it, training one classifier with checkpoints (so every image experiment can be
//! interrupted and resumed with `--resume`), the membership attack ([`membership`]) and what
//! LiRA reads from a classifier ([`lira`]).

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Device;
use gaussmask_data::images::{ImageDataset, ImageSet, Normalizer, disjoint_splits};
use gaussmask_harness::config::require;
use gaussmask_harness::records::{Csv, series_headings};
use gaussmask_harness::{HarnessError, RunContext, Training};
use gaussmask_nn::image::{ImageModelConfig, MaskedNet, MlpReplicas};
use gaussmask_train::classify::{
    ClassifierReplicas, ClassifierSpec, ImageData, accuracy, posteriors,
};
use gaussmask_train::fit::Fit;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod lira;
pub mod membership;

/// The `[data]` section of an image experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    /// Folder of the dataset's files; by default its install locations are searched.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Training images used, drawn at random (seeded) from the training split; 0: all.
    #[serde(default)]
    pub n_train: usize,
    /// Test images used, drawn likewise from the test split; 0: all.
    #[serde(default)]
    pub n_test: usize,
    /// Floor of the per-pixel std in the normalization, in grey levels (see
    /// [`Normalizer`]).
    #[serde(default = "one")]
    pub std_floor: f64,
    /// Seed of the subsets.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

impl ImageDataConfig {
    /// Checks the fields; the error names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        require(
            self.std_floor.is_finite() && self.std_floor > 0.0,
            "data.std_floor",
            "a number > 0",
            self.std_floor,
        )
    }
}

/// Checks that `dataset` is where the config says (or installed), before anything runs; the
/// error gives the install command.
pub fn check_dataset(dataset: ImageDataset, path: Option<&std::path::Path>) -> Result<(), String> {
    dataset.locate(path).map(|_| ()).map_err(|e| e.to_string())
}

/// Normalized images with labels, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    /// Images `[n, c·h·w]`.
    pub x: Vec<f32>,
    /// Labels `[n]`.
    pub labels: Vec<u8>,
    /// (c, h, w).
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl Images {
    /// The borrowed view the trainer takes.
    pub fn view(&self) -> ImageData<'_> {
        ImageData {
            x: &self.x,
            labels: &self.labels,
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// The images at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Self {
        let dim: usize = self.shape.iter().product();
        Self {
            x: rows
                .iter()
                .flat_map(|&i| self.x[i * dim..(i + 1) * dim].iter().copied())
                .collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// These images followed by `other`'s (same shape and classes).
    pub fn concat(&self, other: &Images) -> Self {
        debug_assert_eq!((self.shape, self.classes), (other.shape, other.classes));
        Self {
            x: [self.x.as_slice(), &other.x].concat(),
            labels: [self.labels.as_slice(), &other.labels].concat(),
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// Normalized `set` under `norm`.
    pub fn from_set(set: &ImageSet, norm: &Normalizer) -> Self {
        Self {
            x: norm.apply(set),
            labels: set.labels.clone(),
            shape: [set.channels, set.height, set.width],
            classes: set.classes,
        }
    }
}

/// The dataset last loaded, with where it was asked for: an experiment's units come dataset by
/// dataset, so a process reads each one once.
type LoadedSlot = Option<(ImageDataset, Option<PathBuf>, ImageSet, ImageSet)>;
static LOADED: std::sync::Mutex<LoadedSlot> = std::sync::Mutex::new(None);

/// Loads `dataset` from `path` or its install locations; a reader error becomes an input error
/// (it names the file or the install command).
pub fn load(
    dataset: ImageDataset,
    path: Option<&std::path::Path>,
) -> Result<(ImageSet, ImageSet), HarnessError> {
    let mut slot = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((d, p, train, test)) = slot.as_ref()
        && *d == dataset
        && p.as_deref() == path
    {
        return Ok((train.clone(), test.clone()));
    }
    let (train, test) = dataset
        .load(path)
        .map_err(|e| HarnessError::input(e.to_string()))?;
    *slot = Some((
        dataset,
        path.map(PathBuf::from),
        train.clone(),
        test.clone(),
    ));
    Ok((train, test))
}

/// A seeded subset of `n` images of `set` (all of it when `n` is 0).
pub fn subset(set: &ImageSet, n: usize, seed: u64, field: &str) -> Result<ImageSet, HarnessError> {
    if n == 0 {
        return Ok(set.clone());
    }
    let rows = disjoint_splits(set.n, &[n], seed)
        .map_err(|e| HarnessError::input(format!("{field}: {e}")))?;
    Ok(set.subset(&rows[0]))
}

/// The training and test images of `dataset` as the config asks, normalized with statistics
/// of the training images used.
pub fn prepare(
    dataset: ImageDataset,
    data: &ImageDataConfig,
) -> Result<(Images, Images), HarnessError> {
    let (train, test) = load(dataset, data.path.as_deref())?;
    let train = subset(&train, data.n_train, data.seed, "data.n_train")?;
    let test = subset(&test, data.n_test, data.seed ^ 1, "data.n_test")?;
    let norm = Normalizer::fit(&train, data.std_floor);
    Ok((
        Images::from_set(&train, &norm),
        Images::from_set(&test, &norm),
    ))
}

/// Trains one classifier under `spec` from its checkpoint `key` (or from scratch), through
/// [`RunContext::run_resumable`] (checkpoints every `--checkpoint-every` steps and at
/// SIGINT/SIGTERM). After each epoch `on_epoch(epoch, model, side)` may record evaluations of
/// the evaluation model in `side`, which is checkpointed with the run. `tick` is called once
/// per step. Returns the trained model (training mode) and `side`.
///
/// # Errors
/// Interrupted (exit 130, checkpoint saved), diverged, or a checkpoint that cannot be written
/// or read.
#[allow(clippy::too_many_arguments)]
pub fn train_checkpointed<S: Serialize + DeserializeOwned + Default>(
    ctx: &RunContext,
    key: &str,
    spec: ClassifierSpec<'_>,
    data: ImageData<'_>,
    device: &Device,
    tick: impl FnMut(),
    mut on_epoch: impl FnMut(usize, &MaskedNet, &mut S) -> Result<(), HarnessError>,
) -> Result<(MaskedNet, S), HarnessError> {
    let dataset = data.dataset();
    let per_epoch = spec.train.steps_per_epoch(data.n());
    let on_step = |fit: &Fit<MaskedNet>, side: &mut S| {
        if fit.step().is_multiple_of(per_epoch) {
            on_epoch(fit.step() / per_epoch, &fit.model().valid(), side)?;
        }
        Ok(())
    };
    let begin = |saved: Option<(&[u8], &_)>| {
        let model = spec.init(data.shape, data.classes, device);
        let fit = match saved {
            Some((bytes, _)) => spec
                .resume(model, bytes, &dataset, device)
                .map_err(|e| e.to_string())?,
            None => spec
                .fit(model, &dataset, device)
                .map_err(|e| e.to_string())?,
        };
        Ok(Training::new(fit, key, on_step))
    };
    let (training, side) = ctx.run_resumable(key, key, begin, |_| S::default(), tick)?;
    Ok((training.into_fit().into_model(), side))
}

/// Trains R MLP classifiers as one model ([`ClassifierReplicas`]: each on its own rows of
/// `data`) from the checkpoint `key` (or from scratch), checkpointed as [`train_checkpointed`]
/// is; `tick` once per step. Returns each replica as its classifier (training mode).
///
/// # Errors
/// As [`train_checkpointed`]; DP-SGD in the training config.
pub fn train_replicas_checkpointed(
    ctx: &RunContext,
    key: &str,
    replicas: &ClassifierReplicas<'_>,
    data: ImageData<'_>,
    device: &Device,
    tick: impl FnMut(),
) -> Result<Vec<MaskedNet>, HarnessError> {
    let dataset = data.dataset();
    let begin = |saved: Option<(&[u8], &_)>| {
        let model = replicas.init(data.shape, data.classes, device);
        let fit = match saved {
            Some((bytes, _)) => replicas
                .resume(model, bytes, &dataset, device)
                .map_err(|e| e.to_string())?,
            None => replicas
                .fit(model, &dataset, device)
                .map_err(|e| e.to_string())?,
        };
        Ok(Training::new(
            fit,
            key,
            |_: &Fit<MlpReplicas>, _: &mut ()| Ok(()),
        ))
    };
    let (training, ()) = ctx.run_resumable(key, key, begin, |_| (), tick)?;
    let model = training.into_fit().into_model();
    Ok((0..model.replicas()).map(|r| model.replica(r)).collect())
}

/// Test accuracy of the evaluation model `model` (mask off) on `images`.
pub fn test_accuracy(model: &MaskedNet, images: &Images, device: &Device) -> f64 {
    let p = posteriors(model, images.view(), 500, device);
    accuracy(&p, &images.labels, images.classes)
}

/// The training lengths of a record's `epochs` column over `rows`, in order, with their table
/// headings: "20 epochs" for the first, the bare number for the rest.
///
/// # Errors
/// No `epochs` column, or a value that is not a number.
pub fn epoch_columns(csv: &Csv, rows: &[usize]) -> Result<(Vec<f64>, Vec<String>), HarnessError> {
    let epochs = csv.distinct(rows, "epochs")?;
    let labels: Vec<String> = epochs.iter().map(|e| e.to_string()).collect();
    let headings = series_headings(&labels, |e| format!("{e} epochs"), str::to_string);
    Ok((epochs, headings))
}

/// Label of a model config in tables: its architecture and layer sizes.
pub fn model_label(m: &ImageModelConfig) -> String {
    let hidden: Vec<String> = m.hidden.iter().map(usize::to_string).collect();
    match m.architecture {
        gaussmask_nn::image::Architecture::Mlp => format!("mlp-{}", hidden.join("-")),
        gaussmask_nn::image::Architecture::Cnn => {
            let ch: Vec<String> = m.channels.iter().map(usize::to_string).collect();
            format!("cnn-{}", ch.join("-"))
        }
    }
}
