//! The host engine: the masked GD step with a hand-derived gradient, on the CPU.
//!
//! Per step and replica, with X̃ = X ⊙ C (masks drawn straight into X̃), Z = X̃ Wᵀ,
//! f = relu(Z) a / √m and r = f − y:
//!   ∂L/∂W = Gᵀ X̃ with G_ij = r_i a_j 1[Z_ij > 0] / √m,   ∂L/∂a = relu(Z)ᵀ r / √m.
//! The two matmuls go to `gemm` (runtime-dispatched AVX2/FMA kernels, through
//! `gaussmask_cpu_ops::gemm`'s bounds-checked call); the rest is one pass over Z. Units of work
//! (one replica × up to 256 rows) run in parallel on the rayon pool, so a sweep of replicas and
//! a lone large replica both keep every core busy.
#![allow(unsafe_code)] // the AVX2 readout, called only where the CPU has AVX2

use burn::tensor::{DType, Device};
use gaussmask_data::Dataset;
use gaussmask_nn::{MASK_BLOCK_ROWS, MaskCall, Replica, TwoLayerRelu, TwoLayerReluConfig};
use rayon::prelude::*;

use crate::{Batches, LogRecord, Objective, TrainConfig, TrainError, check_finite, tensor_io};

/// The float types the host engine runs in (the run's dtype): those of `gaussmask-cpu-ops`'
/// kernels, plus the relu and its step.
pub(crate) trait Real: gaussmask_cpu_ops::Real {
    /// max(self, 0), branch-free.
    fn relu(self) -> Self {
        self.max(Self::ZERO)
    }
    /// 1 if self > 0 else 0, branch-free.
    fn step(self) -> Self;
}

impl Real for f32 {
    fn step(self) -> Self {
        (self > 0.0) as u8 as Self
    }
}

impl Real for f64 {
    fn step(self) -> Self {
        (self > 0.0) as u8 as Self
    }
}

/// Trains on the host in the device's float type; see [`crate::train_two_layer`].
pub(crate) fn train(
    model_config: &TwoLayerReluConfig,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    log: impl FnMut(&LogRecord),
) -> Result<TwoLayerRelu, TrainError> {
    let device = device.clone().autodiff();
    // The module gives the initial weights (and takes the final ones) so every engine starts
    // from the same values in the same dtype.
    let model = model_config.init(replicas, &device);
    let (w, a) = if model.w.val().dtype() == DType::F64 {
        run::<f64>(&model, data, config, model_config.train_output, log)?
    } else {
        run::<f32>(&model, data, config, model_config.train_output, log)?
    };
    let dims = model.dims();
    Ok(TwoLayerRelu::from_weights(
        w,
        a,
        dims,
        model_config.train_output,
        model.mask,
        &device,
    ))
}

/// One replica's weights and optimizer state.
struct Weights<T> {
    w: Vec<T>,
    a: Vec<T>,
    velocity_w: Vec<T>,
    velocity_a: Vec<T>,
}

/// A share of parallel work: one replica's share of the rows (at most [`UNIT_ROWS`]), with its
/// scratch buffers.
struct Share<T> {
    replica: usize,
    /// Positions in the step's batch, whole mask blocks.
    rows: std::ops::Range<usize>,
    /// Rows of the data set for the clean loss.
    clean_rows: std::ops::Range<usize>,
    /// Masked inputs X̃, `[rows, d]`.
    x_masked: Vec<T>,
    /// One block's mask draws, `[MASK_BLOCK_ROWS, d]`.
    mask: Vec<f64>,
    /// Z, then G in place, `[rows, m]`.
    z: Vec<T>,
    /// Z of the clean inputs, `[clean_rows, m]`.
    z_clean: Vec<T>,
    /// This unit's share of ∂L/∂W and ∂L/∂a (empty while the signs are frozen).
    grad_w: Vec<T>,
    grad_a: Vec<T>,
}

/// Sizes and constants shared by the units of a run.
struct Shape<T> {
    m: usize,
    d: usize,
    /// 1/√m.
    scale: T,
}

/// What one step gives a unit to read.
struct StepInput<'a, T> {
    call: Option<&'a MaskCall>,
    /// Dataset indices of the batch rows.
    rows: &'a [usize],
    x: &'a [T],
    y: &'a [T],
    x_all: &'a [T],
    y_all: &'a [T],
    /// Compute the clean loss (the step is logged) …
    logged: bool,
    /// … which equals the masked loss for replicas whose mask is the identity on the full batch.
    full_batch: bool,
    /// Compute ∂L/∂W (every step but the last).
    backward: bool,
}

/// Rows per unit of work: enough for efficient matmuls, few enough that a lone replica keeps
/// every core busy. Fixed, not derived from the thread count, so results (whose rounding
/// depends on how the gradient is summed) are the same on every machine and whichever
/// replicas train together.
const UNIT_ROWS: usize = 8 * MASK_BLOCK_ROWS;

/// Splits `0..n` into `parts` ranges of at most [`UNIT_ROWS`] (the last ones may be empty).
fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    (0..parts)
        .map(|p| (p * UNIT_ROWS).min(n)..((p + 1) * UNIT_ROWS).min(n))
        .collect()
}

fn run<T: Real>(
    model: &TwoLayerRelu,
    data: &Dataset,
    config: &TrainConfig,
    train_output: bool,
    mut log: impl FnMut(&LogRecord),
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let [r_count, m, d] = model.dims();
    let shape = Shape {
        m,
        d,
        scale: T::of(1.0 / (m as f64).sqrt()),
    };
    let cast = |v: Vec<f64>| v.into_iter().map(T::of).collect::<Vec<T>>();
    let w0 = cast(tensor_io::to_f64(model.w.val()));
    let a0 = cast(tensor_io::to_f64(model.a.val()));
    let x_all = cast(data.x.clone());
    let y_all = cast(data.y.clone());
    let mut weights: Vec<Weights<T>> = (0..r_count)
        .map(|r| Weights {
            w: w0[r * m * d..(r + 1) * m * d].to_vec(),
            a: a0[r * m..(r + 1) * m].to_vec(),
            velocity_w: vec![T::ZERO; m * d],
            velocity_a: vec![T::ZERO; m],
        })
        .collect();
    // Every replica has the same number of units (for the batch rows and the clean rows).
    let batch = config.batch_size.unwrap_or(data.n);
    let parts = batch.max(data.n).div_ceil(UNIT_ROWS);
    let mut units: Vec<Share<T>> = (0..r_count)
        .flat_map(|r| {
            split(batch, parts)
                .into_iter()
                .zip(split(data.n, parts))
                .map(move |(rows, clean_rows)| Share {
                    replica: r,
                    x_masked: vec![T::ZERO; rows.len() * d],
                    mask: vec![0.0; MASK_BLOCK_ROWS * d],
                    z: vec![T::ZERO; rows.len() * m],
                    z_clean: vec![T::ZERO; clean_rows.len() * m],
                    grad_w: vec![T::ZERO; m * d],
                    grad_a: vec![T::ZERO; if train_output { m } else { 0 }],
                    rows,
                    clean_rows,
                })
        })
        .collect();
    let mask = &model.mask;
    let mut batches = Batches::new(data.n, config.batch_size, config.shuffle_seed);
    let (mut x_batch, mut y_batch) = (Vec::new(), Vec::new());
    let (lr, lr_output) = (
        T::of(config.lr),
        T::of(config.lr_output.unwrap_or(config.lr)),
    );
    let momentum = T::of(config.momentum);

    for step in 0..=config.steps {
        let batch_rows = batches.next();
        let (rows, x, y): (&[usize], &[T], &[T]) = match &batch_rows {
            None => (batches.all(), &x_all, &y_all),
            Some(rows) => {
                gather(rows, d, &x_all, &y_all, &mut x_batch, &mut y_batch);
                (rows, &x_batch, &y_batch)
            }
        };
        let call = (config.objective == Objective::Masked).then(|| mask.begin());
        let input = StepInput {
            call: call.as_ref(),
            rows,
            x,
            y,
            x_all: &x_all,
            y_all: &y_all,
            logged: config.logged(step),
            full_batch: batch_rows.is_none(),
            backward: step < config.steps,
        };
        let task = |u: &mut Share<T>| u.step(&shape, &weights[u.replica], &input);
        let losses: Vec<(f64, f64)> = if units.len() > 1 {
            units.par_iter_mut().map(task).collect()
        } else {
            units.iter_mut().map(task).collect()
        };
        if input.logged {
            let per_replica = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
                losses
                    .chunks(parts)
                    .map(|l| l.iter().map(pick).sum())
                    .collect()
            };
            let record = LogRecord {
                step,
                clean_loss: per_replica(|l| l.0),
                masked_loss: per_replica(|l| l.1),
                weights: config.wants_weights(step).then(|| {
                    let w = weights.iter().flat_map(|s| s.w.iter().map(|v| v.get()));
                    w.collect()
                }),
            };
            check_finite(&record)?;
            log(&record);
        }
        if !input.backward {
            break;
        }
        for (wr, group) in weights.iter_mut().zip(units.chunks_mut(parts)) {
            let (first, rest) = group.split_first_mut().expect("one unit per part");
            for other in rest {
                add(&mut first.grad_w, &other.grad_w);
                add(&mut first.grad_a, &other.grad_a);
            }
            descend(&mut wr.w, &mut wr.velocity_w, &first.grad_w, lr, momentum);
            if train_output {
                descend(
                    &mut wr.a,
                    &mut wr.velocity_a,
                    &first.grad_a,
                    lr_output,
                    momentum,
                );
            }
        }
    }
    let w = weights.iter().flat_map(|s| s.w.iter().map(|v| v.get()));
    let a = weights.iter().flat_map(|s| s.a.iter().map(|v| v.get()));
    Ok((w.collect(), a.collect()))
}

fn add<T: Real>(acc: &mut [T], other: &[T]) {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a = *a + b;
    }
}

/// Copies the rows `rows` of the data into the batch buffers.
fn gather<T: Real>(rows: &[usize], d: usize, x: &[T], y: &[T], xb: &mut Vec<T>, yb: &mut Vec<T>) {
    xb.clear();
    yb.clear();
    for &i in rows {
        xb.extend_from_slice(&x[i * d..(i + 1) * d]);
        yb.push(y[i]);
    }
}

impl<T: Real> Share<T> {
    /// The unit's share of one step: masks into X̃, Z = X̃ Wᵀ, residuals and G (in place of
    /// Z), ∂L/∂a and ∂L/∂W, and the clean loss when logged. Returns (clean, masked) loss shares.
    fn step(&mut self, shape: &Shape<T>, weights: &Weights<T>, input: &StepInput<T>) -> (f64, f64) {
        let (m, d, r) = (shape.m, shape.d, self.replica);
        let rows = self.rows.clone();
        let x = &input.x[rows.start * d..rows.end * d];
        let identity = input.call.is_none_or(|c| c.is_identity(r));
        match input.call {
            Some(call) if !identity => {
                let first_block = rows.start / MASK_BLOCK_ROWS;
                let blocks = self.x_masked.chunks_mut(MASK_BLOCK_ROWS * d);
                for (b, (xm, xb)) in blocks.zip(x.chunks(MASK_BLOCK_ROWS * d)).enumerate() {
                    let start = rows.start + b * MASK_BLOCK_ROWS;
                    let block_rows = &input.rows[start..start + xm.len() / d];
                    let c = &mut self.mask[..xm.len()];
                    call.fill_block(r, first_block + b, block_rows, d, c);
                    for ((o, &xv), &cv) in xm.iter_mut().zip(xb).zip(c.iter()) {
                        *o = xv * T::of(cv);
                    }
                }
            }
            _ => self.x_masked.copy_from_slice(x),
        }
        let n = rows.len();
        matmul_abt(n, m, d, &self.x_masked, &weights.w, &mut self.z);
        self.grad_a.iter_mut().for_each(|g| *g = T::ZERO);
        let y = &input.y[rows.clone()];
        let masked = readout(&mut self.z, y, &weights.a, shape.scale, &mut self.grad_a);
        let clean = if !input.logged {
            f64::NAN
        } else if identity && input.full_batch {
            masked // the mask was the identity on the full batch
        } else {
            let cr = self.clean_rows.clone();
            let x_clean = &input.x_all[cr.start * d..cr.end * d];
            matmul_abt(cr.len(), m, d, x_clean, &weights.w, &mut self.z_clean);
            clean(&self.z_clean, &input.y_all[cr], &weights.a, shape.scale)
        };
        if input.backward {
            if n == 0 {
                self.grad_w.fill(T::ZERO); // an empty share (a minibatch smaller than the data)
            } else {
                matmul_atb(m, d, n, &self.z, &self.x_masked, &mut self.grad_w);
            }
        }
        (clean, masked)
    }
}

/// Lanes of the dot products: independent partial sums the compiler keeps in vector registers.
const LANES: usize = 8;

/// Σ_j relu(z_j) a_j.
#[inline(always)]
fn relu_dot<T: Real>(z: &[T], a: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let (zc, at) = (z.chunks_exact(LANES), a.chunks_exact(LANES));
    let (z_rest, a_rest) = (zc.remainder(), at.remainder());
    for (zc, ac) in zc.zip(at) {
        for k in 0..LANES {
            acc[k] = acc[k] + zc[k].relu() * ac[k];
        }
    }
    let mut f = acc.iter().fold(T::ZERO, |s, &v| s + v);
    for (&zj, &aj) in z_rest.iter().zip(a_rest) {
        f = f + zj.relu() * aj;
    }
    f
}

/// Residuals, loss and G (in place of Z) of a block of rows; adds the block's ∂L/∂a to
/// `grad_a` unless it is empty.
///
/// # Shapes
/// - `z`: `[rows, m]`, `y`: `[rows]`, `a`, `grad_a`: `[m]` (or `grad_a` empty)
#[inline(always)]
fn readout_generic<T: Real>(z: &mut [T], y: &[T], a: &[T], scale: T, grad_a: &mut [T]) -> f64 {
    let mut loss = 0.0;
    for (zi, &yi) in z.chunks_exact_mut(a.len()).zip(y) {
        let res = relu_dot(zi, a) * scale - yi;
        loss += 0.5 * res.get() * res.get();
        let rs = res * scale;
        for (g, &zij) in grad_a.iter_mut().zip(zi.iter()) {
            *g = *g + rs * zij.relu();
        }
        for (zij, &aj) in zi.iter_mut().zip(a) {
            *zij = rs * aj * zij.step();
        }
    }
    loss
}

gaussmask_cpu_ops::multiversion!(readout, readout_generic,
    (z: &mut [T], y: &[T], a: &[T], scale: T, grad_a: &mut [T]) -> f64);

/// ½ Σ (relu(z_i) · a · scale − y_i)² over a block of rows.
#[inline(always)]
fn clean_generic<T: Real>(z: &[T], y: &[T], a: &[T], scale: T) -> f64 {
    let mut loss = 0.0;
    for (zi, &yi) in z.chunks_exact(a.len()).zip(y) {
        let res = (relu_dot(zi, a) * scale - yi).get();
        loss += 0.5 * res * res;
    }
    loss
}

gaussmask_cpu_ops::multiversion!(clean, clean_generic, (z: &[T], y: &[T], a: &[T], scale: T) -> f64);

/// v ← μ v + g, p ← p − η v (Burn's SGD momentum with no dampening; plain GD at μ = 0).
fn descend<T: Real>(p: &mut [T], v: &mut [T], g: &[T], lr: T, momentum: T) {
    if momentum > T::ZERO {
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = momentum * *v + g;
            *p = *p - lr * *v;
        }
    } else {
        for (p, &g) in p.iter_mut().zip(g) {
            *p = *p - lr * g;
        }
    }
}

/// out = A Bᵀ.
///
/// # Shapes
/// - `a`: `[n, k]`, `b`: `[m, k]`, `out`: `[n, m]`, all row-major
fn matmul_abt<T: Real>(n: usize, m: usize, k: usize, a: &[T], b: &[T], out: &mut [T]) {
    // A row-major: column stride 1, row stride k; Bᵀ read from row-major B: (1, k) swapped.
    gemm_into(n, m, k, out, (a, 1, k), (b, k, 1));
}

/// out = Aᵀ B.
///
/// # Shapes
/// - `a`: `[k, n]`, `b`: `[k, m]`, `out`: `[n, m]`, all row-major
fn matmul_atb<T: Real>(n: usize, m: usize, k: usize, a: &[T], b: &[T], out: &mut [T]) {
    // Aᵀ read from row-major A through swapped strides; B row-major.
    gemm_into(n, m, k, out, (a, n, 1), (b, 1, m));
}

/// out (`[n, m]`, row-major) = lhs · rhs, with `lhs` an n×k and `rhs` a k×m matrix each given
/// as (values, column stride, row stride), on the calling thread.
fn gemm_into<T: Real>(
    n: usize,
    m: usize,
    k: usize,
    out: &mut [T],
    lhs: (&[T], usize, usize),
    rhs: (&[T], usize, usize),
) {
    gaussmask_cpu_ops::gemm(n, m, k, out, false, lhs, rhs);
}
