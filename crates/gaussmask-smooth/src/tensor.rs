//! Tensor versions of the closed forms, batched over replicas × samples × neurons and
//! differentiable through Burn's autodiff.
//!
//! Conventions: W is `[R, m, d]`, inputs x are `[1, n, d]` (shared by the replicas) or `[R, n, d]`,
//! output signs a are `[R, m]`, κ is one value per replica.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use burn::tensor::{Device, Tensor};
use gaussmask_core::tensor_io::from_f64;

/// Smallest standard deviation used in a division: s = 0 (κ = 0, or w ⊙ x = 0) is evaluated as
/// this, which gives the ReLU limit exactly (a = z/s is then ±huge, Φ(a) ∈ {0, 1}, φ(a) = 0) with
/// finite values and gradients in f32 and f64 alike.
pub const S_FLOOR: f64 = 1e-30;

/// Standard normal CDF Φ(t) = ½(1 + erf(t/√2)).
pub fn norm_cdf<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    ((t * FRAC_1_SQRT_2).erf() + 1.0) * 0.5
}

/// Standard normal density φ(t).
pub fn norm_pdf<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    (t.square() * -0.5).exp() * (1.0 / (2.0 * PI).sqrt())
}

/// Exact smoothed ReLU σ̃(z, s) = zΦ(z/s) + sφ(z/s), elementwise; ReLU(z) where s = 0.
pub fn smoothed_relu<const D: usize>(z: Tensor<D>, s: Tensor<D>) -> Tensor<D> {
    let s = s.clamp_min(S_FLOOR);
    let a = z.clone() / s.clone();
    z * norm_cdf(a.clone()) + s * norm_pdf(a)
}

/// Proxy σ̂(z, s) = zΦ(z/s), elementwise; ReLU(z) where s = 0.
pub fn proxy_relu<const D: usize>(z: Tensor<D>, s: Tensor<D>) -> Tensor<D> {
    let a = z.clone() / s.clamp_min(S_FLOOR);
    z * norm_cdf(a)
}

/// κ per replica as a `[R, 1, 1]` tensor.
pub fn kappa_tensor(kappa: &[f64], device: &Device) -> Tensor<3> {
    from_f64(kappa.to_vec(), [kappa.len(), 1, 1], device)
}

/// Mean and standard deviation of every pre-activation under the mask.
///
/// z_ri = w_rᵀx_i and s_ri = κ‖w_r ⊙ x_i‖₂, where ‖w_r ⊙ x_i‖² = (x ⊙ x)(W ⊙ W)ᵀ.
///
/// # Shapes
/// - `w`: `[R, m, d]`, `x`: `[1, n, d]` or `[R, n, d]`, `kappa`: `[R, 1, 1]`
/// - returns (z, s), each `[R, n, m]`
pub fn preactivations(w: Tensor<3>, x: Tensor<3>, kappa: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let [r, _, d] = w.dims();
    let n = x.dims()[1];
    let x = if x.dims()[0] == r {
        x
    } else {
        x.expand([r, n, d])
    };
    let z = x.clone().matmul(w.clone().swap_dims(1, 2));
    let sq = x.square().matmul(w.square().swap_dims(1, 2));
    // √ has an infinite slope at 0; the floor keeps the gradient finite where w ⊙ x = 0.
    let s = sq.clamp_min(S_FLOOR * S_FLOOR).sqrt() * kappa;
    (z, s)
}

/// (1/√m) Σ_r a_r g_r over the neuron axis.
///
/// # Shapes
/// - `g`: `[R, n, m]`, `a`: `[R, m]`; returns `[R, n]`
pub fn readout(g: Tensor<3>, a: Tensor<2>) -> Tensor<2> {
    let [r, n, m] = g.dims();
    (g * a.unsqueeze_dim::<3>(1)).sum_dim(2).reshape([r, n]) * (1.0 / (m as f64).sqrt())
}

/// The smoothed network f̃(W, x) = (1/√m) Σ_r a_r σ̃(z_r, s_r) = E_c f(W, x ⊙ c).
///
/// # Shapes
/// - `w`: `[R, m, d]`, `a`: `[R, m]`, `x`: `[1|R, n, d]`, `kappa`: `[R, 1, 1]`; returns `[R, n]`
pub fn smoothed_output(w: Tensor<3>, a: Tensor<2>, x: Tensor<3>, kappa: Tensor<3>) -> Tensor<2> {
    let (z, s) = preactivations(w, x, kappa);
    readout(smoothed_relu(z, s), a)
}

/// The proxy network f̂(W, x) = (1/√m) Σ_r a_r σ̂(z_r, s_r).
///
/// # Shapes
/// as [`smoothed_output`]
pub fn proxy_output(w: Tensor<3>, a: Tensor<2>, x: Tensor<3>, kappa: Tensor<3>) -> Tensor<2> {
    let (z, s) = preactivations(w, x, kappa);
    readout(proxy_relu(z, s), a)
}

/// The proxy objective of SPEC §3(B), per replica, and its two parts:
/// L_proxy = ½ Σ_i [(f̂_i − y_i)² + R_i], R_i = (κ²/m) ‖(Σ_r a_r Φ(α_ri) w_r) ⊙ x_i‖².
#[derive(Clone, Debug)]
pub struct ProxyLoss {
    /// ½ Σ_i (f̂_i − y_i)², `[R]`.
    pub smoothed_sse: Tensor<1>,
    /// ½ Σ_i R_i, `[R]`.
    pub regularizer: Tensor<1>,
}

impl ProxyLoss {
    /// Evaluates both parts.
    ///
    /// # Shapes
    /// - `w`: `[R, m, d]`, `a`: `[R, m]`, `x`: `[1|R, n, d]`, `y`: `[1|R, n]`,
    ///   `kappa`: `[R, 1, 1]`
    pub fn new(w: Tensor<3>, a: Tensor<2>, x: Tensor<3>, y: Tensor<2>, kappa: Tensor<3>) -> Self {
        let [r, m, d] = w.dims();
        let n = x.dims()[1];
        let x = if x.dims()[0] == r {
            x
        } else {
            x.expand([r, n, d])
        };
        let (z, s) = preactivations(w.clone(), x.clone(), kappa.clone());
        let alpha = z.clone() / s.clone().clamp_min(S_FLOOR);
        let gate = norm_cdf(alpha); // p_ri = Φ(α_ri), [R, n, m]
        let f_hat = readout(gate.clone() * z, a.clone());
        let smoothed_sse = (f_hat - y).square().sum_dim(1).reshape([r]) * 0.5;
        // Σ_r a_r p_ri w_r for every sample: [R, n, m] @ [R, m, d] → [R, n, d].
        let g = (gate * a.unsqueeze_dim::<3>(1)).matmul(w);
        let per_sample = (g * x).square().sum_dim(2).reshape([r, n]); // ‖·‖² per i
        let k2 = kappa.square().reshape([r, 1]);
        let regularizer = (per_sample * k2).sum_dim(1).reshape([r]) * (0.5 / m as f64);
        Self {
            smoothed_sse,
            regularizer,
        }
    }

    /// L_proxy = smoothed SSE + regularizer, `[R]`.
    pub fn total(&self) -> Tensor<1> {
        self.smoothed_sse.clone() + self.regularizer.clone()
    }
}
