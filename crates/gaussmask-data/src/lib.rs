//! Datasets for gaussmask: seeded synthetic generators (unit-sphere inputs, teacher labels,
//! random labels), every one a pure function of its config, seed included; and `.npy` /
//! safetensors files for exchanging arrays with NumPy; image datasets (IDX, CIFAR-10) in
//! [`images`].

pub mod images;
pub mod npy;
pub mod table;

/// Re-exported: the memory check every config's sizes go through.
pub use gaussmask_core::memory;

use burn::tensor::{Device, Tensor};
use gaussmask_core::InputError;
use gaussmask_core::memory::{f64_bytes, require_memory};
use gaussmask_core::rng::{Stream, tag};
use gaussmask_core::tensor_io::from_f64;
use serde::{Deserialize, Serialize};

/// How labels are made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Labels {
    /// y = teacher(x) + noise, teacher a random two-layer ReLU network.
    #[default]
    Teacher,
    /// y ~ N(0, 1) independent of x.
    Random,
}

/// Distribution of the inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Inputs {
    /// x = g/‖g‖, g ~ N(0, I_d): uniform on the unit sphere.
    #[default]
    UnitSphere,
    /// x ~ N(0, I_d).
    Gaussian,
}

/// A synthetic regression problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of samples n.
    pub n: usize,
    /// Input dimension d.
    pub d: usize,
    /// Input distribution.
    #[serde(default)]
    pub inputs: Inputs,
    /// Label rule.
    #[serde(default)]
    pub labels: Labels,
    /// Hidden width of the teacher network.
    #[serde(default = "default_teacher_width")]
    pub teacher_width: usize,
    /// Standard deviation of Gaussian noise added to teacher labels (before standardization).
    #[serde(default)]
    pub label_noise: f64,
    /// Center labels and scale them to unit variance.
    #[serde(default = "yes")]
    pub standardize: bool,
    /// Seed of inputs, teacher and noise.
    #[serde(default)]
    pub seed: u64,
}

fn default_teacher_width() -> usize {
    10
}
fn yes() -> bool {
    true
}

impl SyntheticConfig {
    /// Teacher labels on unit-sphere inputs, standardized, seed 0.
    pub fn new(n: usize, d: usize) -> Self {
        Self {
            n,
            d,
            inputs: Inputs::UnitSphere,
            labels: Labels::Teacher,
            teacher_width: default_teacher_width(),
            label_noise: 0.0,
            standardize: true,
            seed: 0,
        }
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.n == 0 {
            return Err("data.n must be ≥ 1, got 0".into());
        }
        if self.d == 0 {
            return Err("data.d must be ≥ 1, got 0".into());
        }
        if self.teacher_width == 0 {
            return Err("data.teacher_width must be ≥ 1, got 0".into());
        }
        if !(self.label_noise.is_finite() && self.label_noise >= 0.0) {
            return Err(format!(
                "data.label_noise must be a finite number ≥ 0, got {}",
                self.label_noise
            )
            .into());
        }
        // The inputs and their teacher's activations.
        let bytes =
            f64_bytes(&[self.n, self.d]).saturating_add(f64_bytes(&[self.n, self.teacher_width]));
        require_memory(
            "the synthetic data",
            bytes,
            "data.n, data.d, data.teacher_width",
        )
    }

    /// Generates the dataset.
    pub fn generate(&self) -> Dataset {
        let (n, d) = (self.n, self.d);
        let mut stream = Stream::new(self.seed, tag::DATA);
        let mut x = vec![0.0; n * d];
        stream.fill_normal(&mut x);
        if self.inputs == Inputs::UnitSphere {
            for row in x.chunks_mut(d) {
                let norm = row
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt()
                    .max(f64::MIN_POSITIVE);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        let mut teacher = Stream::new(self.seed, tag::TEACHER);
        let mut y = match self.labels {
            Labels::Random => (0..n).map(|_| teacher.normal()).collect::<Vec<_>>(),
            Labels::Teacher => {
                let k = self.teacher_width;
                let mut w = vec![0.0; k * d];
                teacher.fill_normal(&mut w);
                let a: Vec<f64> = (0..k).map(|_| teacher.sign()).collect();
                let scale = 1.0 / (k as f64).sqrt();
                x.chunks(d)
                    .map(|xi| {
                        let f: f64 = w
                            .chunks(d)
                            .zip(&a)
                            .map(|(wr, ar)| {
                                ar * wr.iter().zip(xi).map(|(p, q)| p * q).sum::<f64>().max(0.0)
                            })
                            .sum();
                        scale * f + self.label_noise * teacher.normal()
                    })
                    .collect()
            }
        };
        if self.standardize && n > 1 {
            let mean = y.iter().sum::<f64>() / n as f64;
            let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
            y.iter_mut().for_each(|v| *v = (*v - mean) / sd);
        }
        Dataset { x, y, n, d }
    }
}

/// A regression dataset held on the host in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs, row-major `[n, d]`.
    pub x: Vec<f64>,
    /// Targets `[n]`.
    pub y: Vec<f64>,
    /// Number of samples.
    pub n: usize,
    /// Input dimension.
    pub d: usize,
}

impl Dataset {
    /// The rows `rows` as device tensors.
    ///
    /// # Shapes
    /// - returns x `[1, k, d]` and y `[1, k]` with k = `rows.len()`
    pub fn tensors(&self, rows: &[usize], device: &Device) -> (Tensor<3>, Tensor<2>) {
        let d = self.d;
        let mut x = Vec::with_capacity(rows.len() * d);
        for &i in rows {
            x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
        }
        let y = rows.iter().map(|&i| self.y[i]).collect();
        (
            from_f64(x, [1, rows.len(), d], device),
            from_f64(y, [1, rows.len()], device),
        )
    }

    /// The first `n_first` rows and the rest, as two datasets (e.g. train and held-out test
    /// from one draw, so they share the teacher).
    ///
    /// # Panics
    /// If `n_first > n`.
    pub fn split(mut self, n_first: usize) -> (Dataset, Dataset) {
        assert!(
            n_first <= self.n,
            "cannot split {} rows at {n_first}",
            self.n
        );
        let d = self.d;
        let rest = Dataset {
            x: self.x.split_off(n_first * d),
            y: self.y.split_off(n_first),
            n: self.n - n_first,
            d,
        };
        self.n = n_first;
        (self, rest)
    }

    /// Mean squared error (1/n) Σ (f(W, x_i) − y_i)² of the two-layer net
    /// f(W, x) = (1/√m) aᵀReLU(W x) on the host.
    ///
    /// # Shapes
    /// `w`: `[m, d]` row-major, `a`: `[m]`
    pub fn mse(&self, w: &[f64], a: &[f64]) -> f64 {
        let d = self.d;
        let scale = 1.0 / (a.len() as f64).sqrt();
        let sse: f64 = self
            .x
            .chunks_exact(d)
            .zip(&self.y)
            .map(|(xi, yi)| {
                let f: f64 = w
                    .chunks_exact(d)
                    .zip(a)
                    .map(|(wr, ar)| {
                        ar * wr.iter().zip(xi).map(|(p, q)| p * q).sum::<f64>().max(0.0)
                    })
                    .sum();
                (scale * f - yi).powi(2)
            })
            .sum();
        sse / self.n.max(1) as f64
    }

    /// All rows as device tensors: x `[1, n, d]`, y `[1, n]`.
    pub fn all_tensors(&self, device: &Device) -> (Tensor<3>, Tensor<2>) {
        let rows: Vec<usize> = (0..self.n).collect();
        self.tensors(&rows, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_rows_in_order_and_mse_matches_a_hand_case() {
        let data = SyntheticConfig::new(10, 3).generate();
        let (first, rest) = data.clone().split(7);
        assert_eq!((first.n, rest.n), (7, 3));
        assert_eq!(first.x[..], data.x[..21]);
        assert_eq!(rest.y[..], data.y[7..]);
        // One neuron w = e_1 with a = 1 on rows (2, 0, 0) → 2 and (−1, 0, 0) → 0; targets 1, 1.
        let hand = Dataset {
            x: vec![2.0, 0.0, 0.0, -1.0, 0.0, 0.0],
            y: vec![1.0, 1.0],
            n: 2,
            d: 3,
        };
        assert_eq!(hand.mse(&[1.0, 0.0, 0.0], &[1.0]), (1.0 + 1.0) / 2.0);
    }

    #[test]
    fn unit_sphere_rows_have_unit_norm_and_labels_are_standardized() {
        let data = SyntheticConfig::new(200, 7).generate();
        for row in data.x.chunks(7) {
            let norm: f64 = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12);
        }
        let mean = data.y.iter().sum::<f64>() / 200.0;
        let var = data.y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 200.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
    }

    #[test]
    fn generation_is_a_function_of_the_seed() {
        let a = SyntheticConfig::new(50, 4).generate();
        let b = SyntheticConfig::new(50, 4).generate();
        let mut other = SyntheticConfig::new(50, 4);
        other.seed = 1;
        assert_eq!(a, b);
        assert_ne!(a.x, other.generate().x);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = SyntheticConfig::new(0, 3);
        assert!(c.validate().unwrap_err().contains("data.n"));
        c.n = 3;
        c.label_noise = f64::NAN;
        assert!(c.validate().unwrap_err().contains("data.label_noise"));
    }
}
