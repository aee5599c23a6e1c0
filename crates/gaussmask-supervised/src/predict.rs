//! Predictions of a trained run on new inputs: a CSV file (the model's feature columns by name,
//! in any order; other columns ignored) or a `.npy` array, mapped with the training
//! statistics; values in the target's units, or classes with their probabilities.

use std::path::Path;

use burn::tensor::Device;
use gaussmask_data::Dataset;
use gaussmask_data::table::read_csv;

use crate::config::Task;
use crate::data::{csv_inputs, csv_targets, npy_inputs, npy_targets};
use crate::network::{Network, argmax, outputs};
use crate::saved::{Manifest, SavedModel};

/// A run's model, ready to predict.
pub struct Predictor {
    /// The run's manifest.
    pub manifest: Manifest,
    /// The model chosen.
    pub entry: SavedModel,
    net: Network,
    device: Device,
}

/// Inputs read from a file, in the model's feature order and the file's units, with the
/// true targets when the file has them.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// Rows `[n, d]`, row-major.
    pub x: Vec<f64>,
    /// Number of rows.
    pub n: usize,
    /// True targets: values, or class indices.
    pub truth: Option<Vec<f64>>,
}

/// What the model says about each row.
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// Regression: a value per row, in the target's units.
    Values(Vec<f64>),
    /// Classification: class probabilities, row-major `[n, classes]`.
    Probabilities(Vec<f64>),
}

impl Prediction {
    /// The metric against true targets: the mean squared error, or the accuracy.
    pub fn metric(&self, truth: &[f64], classes: usize) -> f64 {
        let n = truth.len().max(1) as f64;
        match self {
            Prediction::Values(v) => {
                v.iter()
                    .zip(truth)
                    .map(|(p, y)| (p - y) * (p - y))
                    .sum::<f64>()
                    / n
            }
            Prediction::Probabilities(p) => {
                let hits = p
                    .chunks_exact(classes)
                    .zip(truth)
                    .filter(|(row, y)| argmax(row) == **y as usize)
                    .count();
                hits as f64 / n
            }
        }
    }
}

impl Predictor {
    /// Loads model (`kappa`, `seed`) of the run directory `run` (each optional: by default the
    /// model with the best validation metric).
    ///
    /// # Errors
    /// Not a run of `gaussmask train`, another format version, no such model, or a record of
    /// another shape: one line naming the file.
    pub fn load(
        run: &Path,
        kappa: Option<f64>,
        seed: Option<u64>,
        device: &Device,
    ) -> Result<Self, String> {
        let manifest = Manifest::read(run)?;
        let entry = manifest
            .choose(kappa, seed)
            .map_err(|e| format!("{}: {e}", run.display()))?
            .clone();
        let net = manifest.network(run, &entry, device)?;
        Ok(Self {
            manifest,
            entry,
            net,
            device: device.clone(),
        })
    }

    /// Reads `path`: a `.npy` array of rows (with `targets`, a `.npy` of true targets), or
    /// else a CSV file with the model's feature columns (and, if present, its target column).
    ///
    /// # Errors
    /// A file that cannot be read, a missing feature column, a bad cell (file, row and column
    /// named), rows of another width, an unknown class.
    pub fn read(&self, path: &Path, targets: Option<&Path>) -> Result<Inputs, String> {
        let m = &self.manifest;
        let d = m.features.len();
        if is_npy(path) {
            let (x, n, _) = npy_inputs(path)?;
            if x.len() != n * d {
                return Err(format!(
                    "{}: rows of {} values, the model takes {d}",
                    path.display(),
                    x.len() / n
                ));
            }
            let truth = match targets {
                Some(t) => {
                    let y = npy_targets(t, m.task)?;
                    if y.len() != n {
                        return Err(format!(
                            "{} has {} targets but {} has {n} rows",
                            t.display(),
                            y.len(),
                            path.display()
                        ));
                    }
                    if m.task == Task::Classification
                        && let Some(i) = y.iter().position(|&c| c as usize >= m.classes.len())
                    {
                        return Err(format!(
                            "{}: row {}: class {} is not one of the model's {} classes",
                            t.display(),
                            i + 1,
                            y[i],
                            m.classes.len()
                        ));
                    }
                    Some(y)
                }
                None => None,
            };
            return Ok(Inputs { x, n, truth });
        }
        if let Some(t) = targets {
            return Err(format!(
                "--targets {}: only for .npy inputs (a CSV file carries its target column)",
                t.display()
            ));
        }
        let table = read_csv(path, b',')?;
        let x = csv_inputs(&table, &m.features)?;
        let truth = if table.columns.contains(&m.target) {
            Some(csv_targets(&table, &m.target, m.task, Some(&m.classes))?.0)
        } else {
            None
        };
        Ok(Inputs {
            x,
            n: table.rows(),
            truth,
        })
    }

    /// The model's predictions for `inputs` (in the file's units).
    ///
    /// # Errors
    /// A row whose standardized input does not fit the device's float type, or whose
    /// prediction is not finite (the message names the row, counted from 1).
    pub fn predict(&self, inputs: &Inputs, dtype_max: f64) -> Result<Prediction, String> {
        let m = &self.manifest;
        let mut x = inputs.x.clone();
        m.input_standardization.apply(&mut x);
        let d = m.features.len();
        // NaN compares false too: it is caught here as well.
        if let Some(i) = x
            .iter()
            .position(|v| v.abs().partial_cmp(&dtype_max).is_none_or(|o| o.is_gt()))
        {
            return Err(format!(
                "row {}: input '{}' is {} after standardization, beyond the model's float \
                 type (largest {dtype_max:e})",
                i / d + 1,
                m.features[i % d],
                x[i]
            ));
        }
        let data = Dataset {
            x,
            y: vec![0.0; inputs.n],
            n: inputs.n,
            d: m.features.len(),
        };
        let out = outputs(&self.net, &data, &self.device);
        let prediction = match m.task {
            Task::Regression => Prediction::Values(
                out.iter()
                    .map(|&v| m.target_standardization.invert(v))
                    .collect(),
            ),
            Task::Classification => {
                Prediction::Probabilities(out.iter().map(|lp| lp.exp()).collect())
            }
        };
        let (values, per_row) = match &prediction {
            Prediction::Values(v) => (v, 1),
            Prediction::Probabilities(p) => (p, m.classes.len().max(1)),
        };
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(format!(
                "row {}: the prediction is {} (the row's inputs are too large for the model)",
                i / per_row + 1,
                values[i]
            )),
            None => Ok(prediction),
        }
    }
}

/// Whether `path` names a `.npy` file.
pub fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// The predictions as CSV text: a column named after the target (regression), or the class
/// and its probability.
pub fn to_csv(manifest: &Manifest, prediction: &Prediction) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>, cells: &[String]| {
        w.write_record(cells).expect("writing to memory")
    };
    match prediction {
        Prediction::Values(v) => {
            write(&mut w, std::slice::from_ref(&manifest.target));
            for value in v {
                write(&mut w, &[value.to_string()]);
            }
        }
        Prediction::Probabilities(p) => {
            write(&mut w, &[manifest.target.clone(), "probability".into()]);
            for row in p.chunks_exact(manifest.classes.len()) {
                let k = argmax(row);
                write(&mut w, &[manifest.classes[k].clone(), row[k].to_string()]);
            }
        }
    }
    w.into_inner().expect("writing to memory")
}

/// The predictions as a `.npy` array: `[n]` values, or `[n, classes]` probabilities.
pub fn to_npy(manifest: &Manifest, prediction: &Prediction) -> Vec<u8> {
    let array = match prediction {
        Prediction::Values(v) => gaussmask_data::npy::Array {
            shape: vec![v.len()],
            data: v.clone(),
        },
        Prediction::Probabilities(p) => gaussmask_data::npy::Array {
            shape: vec![p.len() / manifest.classes.len(), manifest.classes.len()],
            data: p.clone(),
        },
    };
    gaussmask_data::npy::encode(&array)
}
