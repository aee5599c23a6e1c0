//! The networks of Li & Yuan (2017): f(B, x) = ‖ReLU(Bᵀx)‖₁ = Σ_j ReLU(b_jᵀx), with B = I + W
//! (identity mapping, "residual") or B = W ("vanilla"), b_j the j-th column of B.
//!
//! The experiment trains on fresh samples every step with the host f64 code here (its gradient
//! derived by hand); [`IdentityNet`] is the same network as a Burn module behind the input
//! mask, [`Trainable`] by the generic trainer, and tested equal to the host step.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use gaussmask_nn::InputMask;
use gaussmask_nn::tensor_io::from_f64;
use gaussmask_train::fit::{Batch, Trainable};

/// Which network: the effective matrix is I + W or W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// f = ‖ReLU((I + W)ᵀx)‖₁.
    Residual,
    /// f = ‖ReLU(Wᵀx)‖₁.
    Vanilla,
}

/// f(B, x̃) behind an input mask, as a Burn module.
#[derive(Module, Debug)]
pub struct IdentityNet {
    /// The input mask.
    pub mask: InputMask,
    /// W `[d, d]`.
    pub w: Param<Tensor<2>>,
    /// Residual (B = I + W) or vanilla (B = W).
    #[module(skip)]
    pub kind: Kind,
}

impl IdentityNet {
    /// The network of weights `w` (`[d, d]` row-major) behind `mask`.
    pub fn new(kind: Kind, w: &[f64], d: usize, mask: InputMask, device: &Device) -> Self {
        Self {
            mask,
            w: Param::from_tensor(from_f64(w.to_vec(), [d, d], device)),
            kind,
        }
    }

    /// f(B, x̃) of every sample, x̃ the masked inputs (clean after `valid()`).
    ///
    /// # Shapes
    /// - `x`: `[n, d]`, `rows`: n dataset indices; returns `[n]`
    pub fn forward_indexed(&self, x: Tensor<2>, rows: &[usize]) -> Tensor<1> {
        let w = self.w.val();
        let b = match self.kind {
            Kind::Residual => {
                let d = w.dims()[0];
                w.clone() + Tensor::eye(d, &w.device())
            }
            Kind::Vanilla => w,
        };
        relu(self.mask.forward_indexed(x, rows).matmul(b))
            .sum_dim(1)
            .squeeze_dim(1)
    }
}

impl Trainable for IdentityNet {
    /// (1/n) Σ_i ½ (f(B, x̃_i) − y_i)², the experiment's SGD loss.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let f = self.forward_indexed(batch.x.clone(), &batch.rows);
        ((f - batch.y.clone()).square() * 0.5).mean().reshape([1])
    }
}

/// The effective matrix B (`[d, d]` row-major) of weights `w` for network `kind`.
pub fn effective(kind: Kind, w: &[f64], d: usize) -> Vec<f64> {
    let mut b = w.to_vec();
    if kind == Kind::Residual {
        for i in 0..d {
            b[i * d + i] += 1.0;
        }
    }
    b
}

/// u = Bᵀx into `u` (`[d]`), and f = Σ_j ReLU(u_j).
pub fn forward(b: &[f64], x: &[f64], u: &mut [f64]) -> f64 {
    let d = x.len();
    u.iter_mut().for_each(|v| *v = 0.0);
    for (i, &xi) in x.iter().enumerate() {
        for (uj, bij) in u.iter_mut().zip(&b[i * d..(i + 1) * d]) {
            *uj += xi * bij;
        }
    }
    u.iter().map(|v| v.max(0.0)).sum()
}

/// The gradient of the batch loss (1/B) Σ_b ½ (f(B, x̃_b) − y_b)² with respect to W (the same
/// for both kinds: ∂f/∂W_ij = x̃_i 1{u_j > 0}), accumulated into `grad` (`[d, d]`, zeroed here),
/// and that loss. `x` is `[batch, d]`, the inputs the student sees.
pub fn loss_and_gradient(b: &[f64], x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
    let d = (b.len() as f64).sqrt() as usize;
    let batch = y.len();
    grad.iter_mut().for_each(|g| *g = 0.0);
    let (mut u, mut gate) = (vec![0.0; d], vec![0.0; d]);
    let mut loss = 0.0;
    for (xb, &yb) in x.chunks_exact(d).zip(y) {
        let r = forward(b, xb, &mut u) - yb;
        loss += 0.5 * r * r;
        for (g, &v) in gate.iter_mut().zip(&u) {
            *g = if v > 0.0 { r } else { 0.0 };
        }
        for (i, &xi) in xb.iter().enumerate() {
            for (g, gj) in grad[i * d..(i + 1) * d].iter_mut().zip(&gate) {
                *g += xi * gj;
            }
        }
    }
    let scale = 1.0 / batch as f64;
    grad.iter_mut().for_each(|g| *g *= scale);
    loss * scale
}

/// g(W) = Σ_i (‖e_i + w*_i‖ − ‖b_i‖): column norms of the teacher's I + W* minus the student's
/// effective matrix B. Li & Yuan's potential; it falls in their first phase.
pub fn potential(b_teacher: &[f64], b: &[f64], d: usize) -> f64 {
    let col = |m: &[f64], j: usize| (0..d).map(|i| m[i * d + j].powi(2)).sum::<f64>().sqrt();
    (0..d).map(|j| col(b_teacher, j) - col(b, j)).sum()
}

/// The spectral norm ‖M‖₂ of a `[d, d]` matrix by power iteration on MᵀM.
pub fn spectral_norm(m: &[f64], d: usize) -> f64 {
    let mut v: Vec<f64> = (0..d).map(|i| 1.0 + 0.01 * i as f64).collect();
    let mut sigma = 0.0;
    for _ in 0..500 {
        // t = M v, then v' = Mᵀ t.
        let t: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|j| m[i * d + j] * v[j]).sum())
            .collect();
        let next: Vec<f64> = (0..d)
            .map(|j| (0..d).map(|i| m[i * d + j] * t[i]).sum())
            .collect();
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        let new_sigma = norm.sqrt();
        v = next.into_iter().map(|x| x / norm).collect();
        if (new_sigma - sigma).abs() <= 1e-14 * new_sigma {
            return new_sigma;
        }
        sigma = new_sigma;
    }
    sigma
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_gradient_match_a_hand_derivation() {
        // d = 2, W = [[0.5, −1], [0, 2]] (row-major), x = (1, −1).
        let w = [0.5, -1.0, 0.0, 2.0];
        let x = [1.0, -1.0];
        let mut u = [0.0; 2];
        // Residual: B = [[1.5, −1], [0, 3]]; Bᵀx = (1.5, −1 − 3) = (1.5, −4) → f = 1.5.
        let b = effective(Kind::Residual, &w, 2);
        assert_eq!(forward(&b, &x, &mut u), 1.5);
        assert_eq!(u, [1.5, -4.0]);
        // Vanilla: Wᵀx = (0.5, −3) → f = 0.5.
        assert_eq!(forward(&effective(Kind::Vanilla, &w, 2), &x, &mut u), 0.5);
        // Loss ½ (1.5 − 1)² with y = 1; ∂/∂W_ij = r x_i 1{u_j > 0} = 0.5 · x_i · (1, 0).
        let mut g = [9.0; 4];
        let loss = loss_and_gradient(&b, &x, &[1.0], &mut g);
        assert_eq!(loss, 0.125);
        assert_eq!(g, [0.5, 0.0, -0.5, 0.0]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let d = 3;
        let w = [0.2, -0.4, 0.1, 0.3, 0.05, -0.2, -0.1, 0.25, 0.15];
        let x = [0.7, -1.2, 0.4, -0.3, 0.9, 1.1];
        let y = [0.5, 2.0];
        let b = effective(Kind::Residual, &w, d);
        let mut g = [0.0; 9];
        loss_and_gradient(&b, &x, &y, &mut g);
        let mut scratch = [0.0; 9];
        let h = 1e-6;
        for k in 0..9 {
            let mut wp = w;
            wp[k] += h;
            let mut wm = w;
            wm[k] -= h;
            let lp = loss_and_gradient(&effective(Kind::Residual, &wp, d), &x, &y, &mut scratch);
            let lm = loss_and_gradient(&effective(Kind::Residual, &wm, d), &x, &y, &mut scratch);
            assert!(((lp - lm) / (2.0 * h) - g[k]).abs() < 1e-7, "entry {k}");
        }
    }

    #[test]
    fn the_burn_module_under_the_generic_trainer_takes_the_host_step() {
        use burn::tensor::FloatDType;
        use gaussmask_data::Dataset;
        use gaussmask_nn::MaskConfig;
        use gaussmask_nn::rng::{Stream, tag};
        use gaussmask_nn::tensor_io::to_f64;
        use gaussmask_train::fit::{FitConfig, fit};

        let mut device = Device::flex();
        device
            .configure(FloatDType::F64)
            .expect("the crate's only flex test configures it first");
        let device = device.autodiff();
        let (d, n, lr) = (4, 6, 0.05);
        let mut s = Stream::new(1, tag::DATA);
        let mut draw = |k: usize| (0..k).map(|_| s.normal()).collect::<Vec<f64>>();
        let (x, y, w) = (draw(n * d), draw(n), draw(d * d));
        let rows: Vec<usize> = (0..n).collect();
        for kind in [Kind::Residual, Kind::Vanilla] {
            // Host: the experiment's step on x ⊙ c, c from the same mask stream.
            let c = MaskConfig::default().init(0.5, 3).sample(&rows, d);
            let masked: Vec<f64> = x.iter().zip(&c).map(|(a, b)| a * b).collect();
            let mut grad = vec![0.0; d * d];
            let host_loss = loss_and_gradient(&effective(kind, &w, d), &masked, &y, &mut grad);
            let host: Vec<f64> = w.iter().zip(&grad).map(|(a, g)| a - lr * g).collect();
            // Burn: one full-batch GD step of `fit` on the module.
            let net = IdentityNet::new(kind, &w, d, MaskConfig::default().init(0.5, 3), &device);
            let data = Dataset {
                x: x.clone(),
                y: y.clone(),
                n,
                d,
            };
            let config = FitConfig {
                steps: 1,
                lr,
                ..FitConfig::default()
            };
            let mut first_loss = None;
            let net = fit(net, &data, &config, &device, |log, _| {
                first_loss.get_or_insert(log.loss[0]);
            })
            .unwrap();
            let loss = first_loss.unwrap();
            assert!(
                (loss - host_loss).abs() <= 1e-12 * host_loss.abs(),
                "{kind:?}: loss"
            );
            for (a, b) in to_f64(net.w.val()).iter().zip(&host) {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{kind:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn potential_and_spectral_norm() {
        let eye = effective(Kind::Residual, &[0.0; 4], 2);
        assert_eq!(potential(&eye, &eye, 2), 0.0);
        // Column norms of [[3, 0], [4, 1]] are 5 and 1.
        assert_eq!(potential(&[3.0, 0.0, 4.0, 1.0], &eye, 2), 4.0);
        assert!((spectral_norm(&[2.0, 0.0, 0.0, -3.0], 2) - 3.0).abs() < 1e-12);
        // Rank one: u vᵀ has norm ‖u‖‖v‖ = 5 · √2.
        let r1 = [3.0, 3.0, 4.0, 4.0];
        assert!((spectral_norm(&r1, 2) - 5.0 * 2f64.sqrt()).abs() < 1e-12);
    }
}
