//! The exact expected loss of SPEC §3(A) as tensor code: the bivariate normal CDF Φ₂ (Genz's
//! method, the same as [`crate::bivariate`]), the moments M_rq = E[u_r⁺u_q⁺], and
//! E_c[½ Σ_i (f(W, x_i ⊙ c_i) − y_i)²] = ½ Σ_i [(f̃_i − y_i)² + V_i].
//!
//! Every branch is evaluated on inputs made safe for it and the results are selected with masks,
//! so values and autodiff gradients stay finite at s = 0, κ = 0, |z/s| → ∞ and |ρ| → 1.

use std::f64::consts::PI;

use burn::tensor::{Bool, Tensor};

use crate::bivariate::{GL_NODES, GL_WEIGHTS, RHO_SWITCH};
use crate::tensor::{S_FLOOR, norm_cdf, norm_pdf, preactivations, readout, smoothed_relu};

/// Standardized arguments are clamped to ±this: Φ(−38) < 1e-315, so nothing changes in f64,
/// and squares stay finite in f32.
const ARG_CLAMP: f64 = 38.0;

fn select<const D: usize>(mask: Tensor<D, Bool>, yes: Tensor<D>, no: Tensor<D>) -> Tensor<D> {
    no.mask_where(mask, yes)
}

fn indicator<const D: usize>(mask: Tensor<D, Bool>) -> Tensor<D> {
    mask.float()
}

/// Upper orthant probability P[X > h, Y > k] for standard normals with correlation r.
fn upper_orthant<const D: usize>(h: Tensor<D>, k: Tensor<D>, r: Tensor<D>) -> Tensor<D> {
    let tp = 2.0 * PI;
    let abs_r = r.clone().abs();
    let use_a = abs_r.clone().lower_elem(RHO_SWITCH);
    let use_c = abs_r.greater_equal_elem(1.0);
    let nodes: Vec<f64> = GL_NODES.iter().flat_map(|&x| [1.0 - x, 1.0 + x]).collect();
    let weights: Vec<f64> = GL_WEIGHTS.iter().flat_map(|&w| [w, w]).collect();

    // Branch A, |r| < 0.925: Drezner–Wesolowsky integral over θ ∈ [0, asin r].
    let r_a = select(use_a.clone(), r.clone(), r.zeros_like());
    let hk = h.clone() * k.clone();
    let hs = (h.clone().square() + k.clone().square()) * 0.5;
    let asr = r_a.asin() * 0.5;
    let mut sum_a = h.zeros_like();
    for (&x, &w) in nodes.iter().zip(&weights) {
        let sn = (asr.clone() * x).sin();
        let arg = (sn.clone() * hk.clone() - hs.clone()) / (-sn.square() + 1.0);
        sum_a = sum_a + arg.exp() * w;
    }
    let branch_a = sum_a * asr * (1.0 / tp) + norm_cdf(-h.clone()) * norm_cdf(-k.clone());

    // Branch B, 0.925 ≤ |r| < 1: Genz's expansion around |r| = 1, for r > 0 after k → sign(r)·k.
    let positive = r.clone().greater_elem(0.0);
    let sign = indicator(positive.clone()) * 2.0 - 1.0;
    let r_b = select(
        use_a.clone().bool_or(use_c.clone()),
        r.ones_like() * 0.95,
        r.clone().abs(),
    );
    let kb = k.clone() * sign;
    let hkb = h.clone() * kb.clone();
    let as_ = (-r_b.clone() + 1.0) * (r_b + 1.0);
    let a = as_.clone().sqrt();
    let bs = (h.clone() - kb.clone()).square();
    let c = (-hkb.clone() + 4.0) * (1.0 / 8.0);
    let d = (-hkb.clone() + 12.0) * (1.0 / 80.0);
    let asr = ((bs.clone() / as_.clone() + hkb.clone()) * -0.5).clamp_min(-100.0);
    let poly = -(c.clone() * (bs.clone() - as_.clone()) * (-d.clone() * bs.clone() + 1.0))
        * (1.0 / 3.0)
        + c.clone() * d.clone() * as_.clone().square()
        + 1.0;
    let mut core = a.clone() * asr.exp() * poly;
    let b = bs.clone().clamp_min(S_FLOOR).sqrt();
    let sp = norm_cdf(-(b.clone() / a.clone())) * tp.sqrt();
    let damp =
        (hkb.clone().clamp_min(-100.0) * -0.5).exp() * indicator(hkb.clone().greater_elem(-100.0));
    let tail = -(c.clone() * bs.clone() * (-d.clone() * bs.clone() + 1.0)) * (1.0 / 3.0) + 1.0;
    core = core - damp * sp * b * tail;
    let half_a = a * 0.5;
    let mut sum_b = h.zeros_like();
    for (&x, &w) in nodes.iter().zip(&weights) {
        let xs = (half_a.clone() * x).square();
        let arg = (bs.clone() / xs.clone() + hkb.clone()) * -0.5;
        let live = indicator(arg.clone().greater_elem(-100.0));
        let sp = c.clone() * xs.clone() * (d.clone() * xs.clone() * 5.0 + 1.0) + 1.0;
        let rs = (-xs.clone() + 1.0).sqrt();
        let ep_arg = (hkb.clone() * xs / (rs.clone() + 1.0).square() * -0.5).clamp_max(80.0);
        let ep = ep_arg.exp() / rs;
        sum_b = sum_b + arg.clamp_min(-100.0).exp() * (sp - ep) * live * w;
    }
    let core = (half_a * sum_b - core) * (1.0 / tp);
    let max_hk = select(h.clone().greater_equal(kb.clone()), h.clone(), kb.clone());
    let when_positive = core.clone() + norm_cdf(-max_hk);
    let lower = select(
        h.clone().lower_elem(0.0),
        norm_cdf(kb.clone()) - norm_cdf(h.clone()),
        norm_cdf(-h.clone()) - norm_cdf(-kb.clone()),
    );
    let when_negative = select(h.clone().greater_equal(kb), -core.clone(), lower - core);
    let branch_b = select(positive.clone(), when_positive, when_negative);

    // Branch C, |r| = 1: X = ±Y exactly.
    let max_hk = select(h.clone().greater_equal(k.clone()), h.clone(), k.clone());
    let anti = (norm_cdf(-k) - norm_cdf(h)).clamp_min(0.0);
    let branch_c = select(positive, norm_cdf(-max_hk), anti);

    let out = select(use_a, branch_a, select(use_c, branch_c, branch_b));
    out.clamp(0.0, 1.0)
}

/// Φ₂(h, k; ρ) = P[X ≤ h, Y ≤ k] for standard normals with correlation ρ, elementwise.
///
/// # Shapes
/// `h`, `k`, `rho` of one shape; returns that shape
pub fn bivariate_norm_cdf<const D: usize>(h: Tensor<D>, k: Tensor<D>, rho: Tensor<D>) -> Tensor<D> {
    let h = h.clamp(-ARG_CLAMP, ARG_CLAMP);
    let k = k.clamp(-ARG_CLAMP, ARG_CLAMP);
    upper_orthant(-h, -k, rho.clamp(-1.0, 1.0))
}

/// M = E[u⁺v⁺] for (u, v) bivariate normal with means (z_u, z_v), standard deviations
/// (s_u, s_v) and correlation ρ, elementwise, in the unscaled form that keeps the s → 0 limit:
///
/// M = (z_u z_v + ρ s_u s_v) Φ₂(a, b; ρ) + z_u s_v φ(b) Φ((a − ρb)/ρ̄) + z_v s_u φ(a) Φ((b − ρa)/ρ̄)
///     + ρ̄ s_u s_v φ(a) φ((b − ρa)/ρ̄),   a = z_u/s_u, b = z_v/s_v, ρ̄ = √(1 − ρ²).
pub fn relu_product_moment<const D: usize>(
    z_u: Tensor<D>,
    s_u: Tensor<D>,
    z_v: Tensor<D>,
    s_v: Tensor<D>,
    rho: Tensor<D>,
) -> Tensor<D> {
    let a = (z_u.clone() / s_u.clone().clamp_min(S_FLOOR)).clamp(-ARG_CLAMP, ARG_CLAMP);
    let b = (z_v.clone() / s_v.clone().clamp_min(S_FLOOR)).clamp(-ARG_CLAMP, ARG_CLAMP);
    let rho = rho.clamp(-1.0, 1.0);
    let rho_bar = (-rho.clone().square() + 1.0).clamp_min(S_FLOOR).sqrt();
    let ta = ((a.clone() - rho.clone() * b.clone()) / rho_bar.clone()).clamp(-ARG_CLAMP, ARG_CLAMP);
    let tb = ((b.clone() - rho.clone() * a.clone()) / rho_bar.clone()).clamp(-ARG_CLAMP, ARG_CLAMP);
    let ss = s_u.clone() * s_v.clone();
    (z_u.clone() * z_v.clone() + rho.clone() * ss.clone())
        * bivariate_norm_cdf(a.clone(), b.clone(), rho)
        + z_u * s_v * norm_pdf(b.clone()) * norm_cdf(ta)
        + z_v * s_u * norm_pdf(a.clone()) * norm_cdf(tb.clone())
        + rho_bar * ss * norm_pdf(a) * norm_pdf(tb)
}

/// The exact decomposition (A) per replica: ½ Σ_i (f̃_i − y_i)² and ½ Σ_i V_i.
#[derive(Clone, Debug)]
pub struct ExactLoss {
    /// ½ Σ_i (f̃_i − y_i)², `[R]`.
    pub smoothed_sse: Tensor<1>,
    /// ½ Σ_i V_i, V_i = Var_c f(W, x_i ⊙ c), `[R]`.
    pub variance: Tensor<1>,
}

impl ExactLoss {
    /// Evaluates both parts, `sample_chunk` samples at a time (memory grows as chunk·m²).
    ///
    /// # Shapes
    /// - `w`: `[R, m, d]`, `a`: `[R, m]`, `x`: `[1|R, n, d]`, `y`: `[1|R, n]`,
    ///   `kappa`: `[R, 1, 1]`
    pub fn new(
        w: Tensor<3>,
        a: Tensor<2>,
        x: Tensor<3>,
        y: Tensor<2>,
        kappa: Tensor<3>,
        sample_chunk: usize,
    ) -> Self {
        let [r, m, d] = w.dims();
        let n = x.dims()[1];
        let x = if x.dims()[0] == r {
            x
        } else {
            x.expand([r, n, d])
        };
        let y = if y.dims()[0] == r {
            y
        } else {
            y.expand([r, n])
        };
        let chunk = sample_chunk.max(1);
        let mut sse = None;
        let mut var = None;
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let xc = x.clone().slice([0..r, start..end, 0..d]);
            let yc = y.clone().slice([0..r, start..end]);
            let (s_part, v_part) = chunk_parts(w.clone(), a.clone(), xc, yc, kappa.clone(), m);
            sse = Some(match sse {
                None => s_part,
                Some(acc) => acc + s_part,
            });
            var = Some(match var {
                None => v_part,
                Some(acc) => acc + v_part,
            });
        }
        Self {
            smoothed_sse: sse.expect("n ≥ 1"),
            variance: var.expect("n ≥ 1"),
        }
    }

    /// E_c L = smoothed SSE + variance term, `[R]`.
    pub fn total(&self) -> Tensor<1> {
        self.smoothed_sse.clone() + self.variance.clone()
    }
}

fn chunk_parts(
    w: Tensor<3>,
    a: Tensor<2>,
    x: Tensor<3>,
    y: Tensor<2>,
    kappa: Tensor<3>,
    m: usize,
) -> (Tensor<1>, Tensor<1>) {
    let [r, n, d] = x.dims();
    let device = w.device();
    let (z, s) = preactivations(w.clone(), x.clone(), kappa);
    let mean = smoothed_relu(z.clone(), s.clone()); // σ̃_ri, [R, n, m]
    let f_tilde = readout(mean.clone(), a.clone());
    let sse = (f_tilde - y).square().sum_dim(1).reshape([r]) * 0.5;

    // ρ_rq per sample: Gram of v_r = w_r ⊙ x_i, G = (W ⊙ x_i²) Wᵀ, normalized by its diagonal.
    let x2 = x.square().reshape([r, n, 1, d]);
    let w4 = w.clone().reshape([r, 1, m, d]);
    let gram = (x2.clone() * w4.clone()).matmul(w4.swap_dims(2, 3)); // [R, n, m, m]
    let norms = (w.square().reshape([r, 1, m, d]) * x2)
        .sum_dim(3)
        .clamp_min(S_FLOOR * S_FLOOR)
        .sqrt(); // [R, n, m, 1]
    // The diagonal is ρ = 1 exactly. Through the Gram matrix it comes out 1 ± ε, where Φ₂ is
    // steep in ρ (∂Φ₂/∂ρ ~ 1/√(1 − ρ²)): its rounding would leak into the gradient. So the
    // diagonal takes its own closed form, M_rr = (z² + s²)Φ(α) + zsφ(α), and ρ = 0 off it.
    let diagonal = Tensor::<2>::eye(m, &device)
        .reshape([1, 1, m, m])
        .expand([r, n, m, m])
        .bool();
    let rho = (gram / (norms.clone() * norms.swap_dims(2, 3))).mask_fill(diagonal.clone(), 0.0);

    let col = |t: Tensor<3>| t.reshape([r, n, m, 1]).expand([r, n, m, m]);
    let row = |t: Tensor<3>| t.reshape([r, n, 1, m]).expand([r, n, m, m]);
    let alpha = (z.clone() / s.clone().clamp_min(S_FLOOR)).clamp(-ARG_CLAMP, ARG_CLAMP);
    let second = (z.clone().square() + s.clone().square()) * norm_cdf(alpha.clone())
        + z.clone() * s.clone() * norm_pdf(alpha);
    let off = relu_product_moment(col(z.clone()), col(s.clone()), row(z), row(s), rho);
    let moment = off.mask_where(diagonal, col(second));
    let cov = moment - col(mean.clone()) * row(mean);
    // V_i = (1/m) aᵀ Cov_i a.
    let a_col = a.clone().reshape([r, 1, m, 1]);
    let a_row = a.reshape([r, 1, 1, m]);
    let v = (cov * a_col * a_row).sum_dim(3).sum_dim(2).reshape([r, n]) * (1.0 / m as f64);
    (sse, v.sum_dim(1).reshape([r]) * 0.5)
}
