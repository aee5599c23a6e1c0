//! A user's samples: read from CSV, `.npy` or IDX files (or generated), split into a training
//! and a validation part, and standardized with statistics of the training part alone.

use std::path::Path;

use gaussmask_data::images::{disjoint_splits, read_idx_pair};
use gaussmask_data::npy;
use gaussmask_data::table::{CsvTable, read_csv, shown};
use gaussmask_data::{Dataset, SyntheticConfig};
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, Source, Task};

/// Samples as read: inputs row-major, targets as values (regression) or class indices.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// Every row used (before the validation split).
    pub rows: Dataset,
    /// The separate test set, if the config names one.
    pub test: Option<Dataset>,
    /// Input names: CSV column names, or `x0`, `x1`, … for arrays.
    pub features: Vec<String>,
    /// Name of the target (the CSV column, or `y`).
    pub target: String,
    /// Class names, index order (classification); empty for regression.
    pub classes: Vec<String>,
    /// Input shape (channels, height, width); `[1, 1, d]` for flat inputs.
    pub shape: [usize; 3],
    /// Things worth a warning (ignored columns).
    pub warnings: Vec<String>,
}

/// Per-coordinate affine map `(v − mean) / std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Means.
    pub mean: Vec<f64>,
    /// Standard deviations (1 where a coordinate is constant).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// The identity on `d` coordinates.
    pub fn identity(d: usize) -> Self {
        Self {
            mean: vec![0.0; d],
            std: vec![1.0; d],
        }
    }

    /// Fits the mean and (population) standard deviation of each of the `d` columns of
    /// row-major `values`, the deviation at least `floor`. Returns the indices of constant
    /// columns too, whose deviation is set to 1 (they are centred, not scaled).
    pub fn fit(values: &[f64], d: usize, floor: f64) -> (Self, Vec<usize>) {
        let n = (values.len() / d.max(1)).max(1) as f64;
        let mut mean = vec![0.0; d];
        for row in values.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for row in values.chunks_exact(d) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        let mut constant = Vec::new();
        let std = var
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let sd = (s / n).sqrt();
                if sd == 0.0 && floor == 0.0 {
                    constant.push(j);
                    1.0
                } else {
                    sd.max(floor)
                }
            })
            .collect();
        (Self { mean, std }, constant)
    }

    /// Applies the map in place to row-major values.
    pub fn apply(&self, values: &mut [f64]) {
        let d = self.mean.len();
        for row in values.chunks_exact_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// The inverse map of coordinate 0 (a standardized target back to its units).
    pub fn invert(&self, value: f64) -> f64 {
        value * self.std[0] + self.mean[0]
    }
}

/// The training and validation parts of the rows, standardized.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// Training rows (standardized).
    pub train: Dataset,
    /// Validation rows (standardized; empty when `data.validation = 0`).
    pub validation: Dataset,
    /// Test rows (standardized), if any.
    pub test: Option<Dataset>,
    /// The inputs' map.
    pub inputs: Standardizer,
    /// A regression target's map (identity for classification or without standardization).
    pub target: Standardizer,
    /// Constant input columns (centred, not scaled).
    pub constant: Vec<usize>,
}

/// Reads the samples the config names; every error names the file (and row and column).
pub fn load(config: &DataConfig, seed: u64) -> Result<Loaded, String> {
    let mut loaded = match &config.source {
        Source::Csv(csv) => {
            let delimiter = csv.delimiter.as_bytes().first().copied().unwrap_or(b',');
            let table = read_csv(&csv.path, delimiter)?;
            let target = csv.target.clone();
            let (features, mut warnings) = pick_features(&table, &target, csv.features.as_deref())?;
            let (rows, classes) = csv_dataset(&table, &features, &target, config.task, None)?;
            if config.task == Task::Classification && classes.len() < 2 {
                warnings.push(format!(
                    "{}: column '{target}' holds a single class",
                    table.origin
                ));
            }
            let test = match &csv.test_path {
                Some(p) => {
                    let t = read_csv(p, delimiter)?;
                    Some(csv_dataset(&t, &features, &target, config.task, Some(&classes))?.0)
                }
                None => None,
            };
            let d = features.len();
            Loaded {
                rows,
                test,
                features,
                target,
                classes,
                shape: [1, 1, d],
                warnings,
            }
        }
        Source::Npy(npy) => {
            let (rows, shape) = npy_dataset(&npy.inputs, Some(npy.targets.as_path()), config.task)?;
            let test = match (&npy.test_path, &npy.test_labels) {
                (Some(p), Some(labels)) => {
                    let (test, test_shape) = npy_dataset(p, Some(labels.as_path()), config.task)?;
                    same_shape(p, test_shape, shape)?;
                    Some(test)
                }
                _ => None,
            };
            let classes = class_indices(config.task, &rows, test.as_ref());
            Loaded {
                features: numbered(rows.d),
                rows,
                test,
                target: "y".into(),
                classes,
                shape,
                warnings: Vec::new(),
            }
        }
        Source::Idx(idx) => {
            let (rows, shape) = idx_dataset(&idx.path, &idx.labels)?;
            let test = match (&idx.test_path, &idx.test_labels) {
                (Some(i), Some(l)) => {
                    let (test, test_shape) = idx_dataset(i, l)?;
                    same_shape(i, test_shape, shape)?;
                    Some(test)
                }
                _ => None,
            };
            let classes = class_indices(config.task, &rows, test.as_ref());
            Loaded {
                features: numbered(rows.d),
                rows,
                test,
                target: "label".into(),
                classes,
                shape,
                warnings: Vec::new(),
            }
        }
        Source::Synthetic(s) => {
            let synthetic = s
                .synthetic
                .clone()
                .unwrap_or_else(|| SyntheticConfig::new(500, 20));
            let rows = synthetic.generate();
            let d = rows.d;
            Loaded {
                features: numbered(d),
                rows,
                test: None,
                target: "y".into(),
                classes: Vec::new(),
                shape: [1, 1, d],
                warnings: Vec::new(),
            }
        }
    };
    if let Some(shape) = config.shape {
        if shape.iter().product::<usize>() != loaded.rows.d {
            return Err(format!(
                "data.shape {shape:?} holds {} values but the inputs have {} features",
                shape.iter().product::<usize>(),
                loaded.rows.d
            ));
        }
        loaded.shape = shape;
    }
    if config.max_rows > 0 && config.max_rows < loaded.rows.n {
        let rows = disjoint_splits(loaded.rows.n, &[config.max_rows], seed ^ 0x5eed)
            .expect("max_rows < n");
        loaded.rows = subset(&loaded.rows, &rows[0]);
    }
    Ok(loaded)
}

/// The feature columns: `wanted`, or every column but the target whose first row is a number.
fn pick_features(
    table: &CsvTable,
    target: &str,
    wanted: Option<&[String]>,
) -> Result<(Vec<String>, Vec<String>), String> {
    table.column(target)?;
    let mut warnings = Vec::new();
    let features: Vec<String> = match wanted {
        Some(list) => {
            for f in list {
                table.column(f)?;
                if f == target {
                    return Err(format!(
                        "data.features: '{f}' is the target column, it cannot be an input too"
                    ));
                }
            }
            list.to_vec()
        }
        None => {
            let mut picked = Vec::new();
            for (j, name) in table.columns.iter().enumerate() {
                if name == target {
                    continue;
                }
                if (0..table.rows()).all(|i| table.cell(i, j).is_empty()) {
                    warnings.push(format!(
                        "{}: column '{}' is empty and is not an input",
                        table.origin,
                        shown(name)
                    ));
                } else if table.looks_numeric(j) {
                    picked.push(name.clone());
                } else {
                    warnings.push(format!(
                        "{}: column '{}' holds text and is not an input (list \
                         data.features to choose the inputs)",
                        table.origin,
                        shown(name)
                    ));
                }
            }
            picked
        }
    };
    if features.is_empty() {
        return Err(format!(
            "{}: no input columns (data.features is empty, or no column but '{target}' is numeric)",
            table.origin
        ));
    }
    Ok((features, warnings))
}

/// Inputs `features` of `table`, row-major.
pub fn csv_inputs(table: &CsvTable, features: &[String]) -> Result<Vec<f64>, String> {
    let columns = features
        .iter()
        .map(|f| table.column(f).and_then(|j| table.numbers(j)))
        .collect::<Result<Vec<_>, _>>()?;
    let n = table.rows();
    let mut x = Vec::with_capacity(n * features.len());
    for i in 0..n {
        x.extend(columns.iter().map(|c| c[i]));
    }
    Ok(x)
}

/// The target column as values (regression) or as indices into `classes` (classification).
/// Without `classes` the classes are those of the column: integers in numeric order, or text
/// in lexicographic order.
pub fn csv_targets(
    table: &CsvTable,
    target: &str,
    task: Task,
    classes: Option<&[String]>,
) -> Result<(Vec<f64>, Vec<String>), String> {
    let col = table.column(target)?;
    match task {
        Task::Regression => Ok((table.numbers(col)?, Vec::new())),
        Task::Classification => {
            let labels = table.texts(col);
            if let Some(row) = labels.iter().position(|l| l.is_empty()) {
                return Err(format!(
                    "{}: empty cell (expected a class)",
                    table.locate(row, col)
                ));
            }
            let classes = match classes {
                Some(c) => c.to_vec(),
                None => class_names(&labels),
            };
            let y = labels
                .iter()
                .enumerate()
                .map(|(row, l)| {
                    classes
                        .iter()
                        .position(|c| c == l)
                        .map(|k| k as f64)
                        .ok_or_else(|| {
                            format!(
                                "{}: class '{}' is not one of the model's classes ({})",
                                table.locate(row, col),
                                shown(l),
                                classes.join(", ")
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((y, classes))
        }
    }
}

/// Distinct labels: numeric order when all are integers, else lexicographic.
fn class_names(labels: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().expect("checked"));
    }
    names
}

fn csv_dataset(
    table: &CsvTable,
    features: &[String],
    target: &str,
    task: Task,
    classes: Option<&[String]>,
) -> Result<(Dataset, Vec<String>), String> {
    let x = csv_inputs(table, features)?;
    let (y, classes) = csv_targets(table, target, task, classes)?;
    Ok((
        Dataset {
            x,
            y,
            n: table.rows(),
            d: features.len(),
        },
        classes,
    ))
}

/// Inputs `[n, …]` of a `.npy` file, flattened per row, and their image shape.
pub fn npy_inputs(path: &Path) -> Result<(Vec<f64>, usize, [usize; 3]), String> {
    let a = npy::read(path)?;
    let shape = match a.shape[..] {
        [_, d] => [1, 1, d],
        [_, h, w] => [1, h, w],
        [_, c, h, w] => [c, h, w],
        _ => {
            return Err(format!(
                "{}: inputs must be an array [n, d], [n, h, w] or [n, c, h, w], got shape {:?}",
                path.display(),
                a.shape
            ));
        }
    };
    let n = a.shape[0];
    if n == 0 || shape.contains(&0) {
        return Err(format!(
            "{}: empty array of shape {:?}",
            path.display(),
            a.shape
        ));
    }
    finite(path, &a.data, shape.iter().product())?;
    Ok((a.data, n, shape))
}

/// Targets `[n]` of a `.npy` file: class indices (integers ≥ 0) for classification.
pub fn npy_targets(path: &Path, task: Task) -> Result<Vec<f64>, String> {
    let a = npy::read(path)?;
    if a.shape.len() != 1 && !(a.shape.len() == 2 && a.shape[1] == 1) {
        return Err(format!(
            "{}: targets must be an array [n], got shape {:?}",
            path.display(),
            a.shape
        ));
    }
    finite(path, &a.data, 1)?;
    if task == Task::Classification
        && let Some(i) = a.data.iter().position(|v| v.fract() != 0.0 || *v < 0.0)
    {
        return Err(format!(
            "{}: row {}: class labels must be integers ≥ 0, got {}",
            path.display(),
            i + 1,
            a.data[i]
        ));
    }
    Ok(a.data)
}

fn finite(path: &Path, data: &[f64], d: usize) -> Result<(), String> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "{}: row {}, column {}: {} (NaN and infinite values are not allowed)",
            path.display(),
            i / d + 1,
            i % d + 1,
            data[i]
        )),
        None => Ok(()),
    }
}

fn npy_dataset(
    inputs: &Path,
    targets: Option<&Path>,
    task: Task,
) -> Result<(Dataset, [usize; 3]), String> {
    let (x, n, shape) = npy_inputs(inputs)?;
    let y = match targets {
        Some(t) => {
            let y = npy_targets(t, task)?;
            if y.len() != n {
                return Err(format!(
                    "{} has {} targets but {} has {n} rows",
                    t.display(),
                    y.len(),
                    inputs.display()
                ));
            }
            y
        }
        None => vec![0.0; n],
    };
    let d = shape.iter().product();
    Ok((Dataset { x, y, n, d }, shape))
}

fn idx_dataset(images: &Path, labels: &Path) -> Result<(Dataset, [usize; 3]), String> {
    let set = read_idx_pair(images, labels, 256)?;
    let d = set.dim();
    if set.n == 0 || d == 0 {
        return Err(format!("{}: no images", images.display()));
    }
    Ok((
        Dataset {
            x: set.pixels.iter().map(|&p| f64::from(p)).collect(),
            y: set.labels.iter().map(|&l| f64::from(l)).collect(),
            n: set.n,
            d,
        },
        [set.channels, set.height, set.width],
    ))
}

fn same_shape(path: &Path, got: [usize; 3], want: [usize; 3]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{}: test inputs of shape {got:?}, the training inputs have {want:?}",
            path.display()
        ))
    }
}

/// Classes 0..K of integer labels (K = the largest label + 1, over training and test rows).
fn class_indices(task: Task, rows: &Dataset, test: Option<&Dataset>) -> Vec<String> {
    if task == Task::Regression {
        return Vec::new();
    }
    let top = rows
        .y
        .iter()
        .chain(test.map(|t| &t.y[..]).unwrap_or(&[]))
        .fold(0.0f64, |a, &b| a.max(b)) as usize;
    (0..=top).map(|k| k.to_string()).collect()
}

fn numbered(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("x{j}")).collect()
}

/// The rows `rows` of `data`, in that order.
pub fn subset(data: &Dataset, rows: &[usize]) -> Dataset {
    let d = data.d;
    Dataset {
        x: rows
            .iter()
            .flat_map(|&i| data.x[i * d..(i + 1) * d].iter().copied())
            .collect(),
        y: rows.iter().map(|&i| data.y[i]).collect(),
        n: rows.len(),
        d,
    }
}

/// Splits `loaded` into training and validation parts (a seeded `validation` fraction, at
/// least one row each when the fraction is > 0) and standardizes every part with statistics
/// of the training part.
pub fn prepare(loaded: &Loaded, config: &DataConfig, seed: u64) -> Result<Prepared, String> {
    let n = loaded.rows.n;
    let n_val = if config.validation > 0.0 {
        ((config.validation * n as f64).round() as usize).max(1)
    } else {
        0
    };
    if n_val >= n {
        return Err(format!(
            "data.validation = {} leaves no training rows of the {n}",
            config.validation
        ));
    }
    let parts = disjoint_splits(n, &[n_val, n - n_val], seed).expect("sizes add up to n");
    let mut validation = subset(&loaded.rows, &parts[0]);
    let mut train = subset(&loaded.rows, &parts[1]);
    let mut test = loaded.test.clone();
    let d = train.d;
    let regression = config.task == Task::Regression;
    let (inputs, constant, target) = if config.standardize {
        let (inputs, constant) = Standardizer::fit(&train.x, d, config.std_floor);
        let target = if regression {
            let (t, flat) = Standardizer::fit(&train.y, 1, 0.0);
            if !flat.is_empty() {
                return Err(format!(
                    "the target '{}' is constant over the training rows: nothing to learn",
                    loaded.target
                ));
            }
            t
        } else {
            Standardizer::identity(1)
        };
        (inputs, constant, target)
    } else {
        (
            Standardizer::identity(d),
            Vec::new(),
            Standardizer::identity(1),
        )
    };
    for part in [Some(&mut train), Some(&mut validation), test.as_mut()]
        .into_iter()
        .flatten()
    {
        inputs.apply(&mut part.x);
        if regression {
            target.apply(&mut part.y);
        }
    }
    Ok(Prepared {
        train,
        validation,
        test,
        inputs,
        target,
        constant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_centres_scales_and_flags_constants() {
        let values = [1.0, 5.0, 3.0, 5.0];
        let (s, constant) = Standardizer::fit(&values, 2, 0.0);
        assert_eq!(s.mean, [2.0, 5.0]);
        assert_eq!(s.std, [1.0, 1.0]);
        assert_eq!(constant, [1]);
        let mut v = values;
        s.apply(&mut v);
        assert_eq!(v, [-1.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.invert(1.0), 3.0);
        let (floored, none) = Standardizer::fit(&values, 2, 4.0);
        assert_eq!(floored.std, [4.0, 4.0]);
        assert!(none.is_empty());
    }

    #[test]
    fn integer_classes_sort_numerically_text_lexicographically() {
        assert_eq!(class_names(&["10", "2", "2", "-1"]), ["-1", "2", "10"]);
        assert_eq!(class_names(&["b", "a", "b"]), ["a", "b"]);
    }
}
