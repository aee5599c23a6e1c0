//! The exact expected loss of SPEC §3(A) as tensor code: the bivariate normal CDF Φ₂ (Genz's
//! method, the same as [`crate::bivariate`]), the moments M_rq = E[u_r⁺u_q⁺], and
//! E_c[½ Σ_i (f(W, x_i ⊙ c_i) − y_i)²] = ½ Σ_i [(f̃_i − y_i)² + V_i].
//!
//! Arguments are clamped and floored so that values and gradients stay finite at s = 0, κ = 0,
//! |z/s| → ∞ and |ρ| → 1.

use std::f64::consts::PI;

use burn::tensor::{Bool, IndexingUpdateOp, Tensor};

use crate::bivariate::{GL_NODES, GL_WEIGHTS, GL6, GL12, RHO_SWITCH};
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

/// Branch |ρ| < 0.925: the Drezner–Wesolowsky integral over θ ∈ [0, asin ρ] by Gauss–Legendre.
fn orthant_integral(
    h: Tensor<1>,
    k: Tensor<1>,
    r: Tensor<1>,
    nodes: &[f64],
    weights: &[f64],
) -> Tensor<1> {
    let hk = h.clone() * k.clone();
    let hs = (h.clone().square() + k.clone().square()) * 0.5;
    let asr = r.asin() * 0.5;
    let mut sum = h.zeros_like();
    for (&x, &w) in nodes.iter().zip(weights) {
        for node in [1.0 - x, 1.0 + x] {
            let sn = (asr.clone() * node).sin();
            let arg = (sn.clone() * hk.clone() - hs.clone()) / (-sn.square() + 1.0);
            sum = sum + arg.exp() * w;
        }
    }
    sum * asr * (1.0 / (2.0 * PI)) + norm_cdf(-h) * norm_cdf(-k)
}

/// Branch 0.925 ≤ |ρ| < 1: Genz's expansion around |ρ| = 1 (for ρ > 0 after k → sign(ρ)·k).
fn orthant_near_one(h: Tensor<1>, k: Tensor<1>, r: Tensor<1>) -> Tensor<1> {
    let tp = 2.0 * PI;
    let positive = r.clone().greater_elem(0.0);
    let kb = k * (indicator(positive.clone()) * 2.0 - 1.0);
    let r = r.abs();
    let hkb = h.clone() * kb.clone();
    let as_ = (-r.clone() + 1.0) * (r + 1.0);
    let a = as_.clone().sqrt();
    let bs = (h.clone() - kb.clone()).square();
    let c = (-hkb.clone() + 4.0) * (1.0 / 8.0);
    let d = (-hkb.clone() + 12.0) * (1.0 / 80.0);
    let asr = ((bs.clone() / as_.clone() + hkb.clone()) * -0.5).clamp_min(-100.0);
    let poly = -(c.clone() * (bs.clone() - as_.clone()) * (-d.clone() * bs.clone() + 1.0))
        * (1.0 / 3.0)
        + c.clone() * d.clone() * as_.clone().square()
        + 1.0;
    let b = bs.clone().clamp_min(S_FLOOR).sqrt();
    let sp = norm_cdf(-(b.clone() / a.clone())) * tp.sqrt();
    // exp(−hk/2) only where hk > −100, as in Genz's code (elsewhere its product is 0).
    let damp =
        (hkb.clone().clamp_min(-100.0) * -0.5).exp() * indicator(hkb.clone().greater_elem(-100.0));
    let tail = -(c.clone() * bs.clone() * (-d.clone() * bs.clone() + 1.0)) * (1.0 / 3.0) + 1.0;
    let core = a.clone() * asr.exp() * poly - damp * sp * b * tail;
    let half_a = a * 0.5;
    let mut sum = h.zeros_like();
    for (&x, &w) in GL_NODES.iter().zip(&GL_WEIGHTS) {
        for node in [1.0 - x, 1.0 + x] {
            let xs = (half_a.clone() * node).square();
            let arg = (bs.clone() / xs.clone() + hkb.clone()) * -0.5;
            let live = indicator(arg.clone().greater_elem(-100.0));
            let sp = c.clone() * xs.clone() * (d.clone() * xs.clone() * 5.0 + 1.0) + 1.0;
            let rs = (-xs.clone() + 1.0).sqrt();
            let ep_arg = (hkb.clone() * xs / (rs.clone() + 1.0).square() * -0.5).clamp_max(80.0);
            let ep = ep_arg.exp() / rs;
            sum = sum + arg.clamp_min(-100.0).exp() * (sp - ep) * live * w;
        }
    }
    let core = (half_a * sum - core) * (1.0 / tp);
    let max_hk = select(h.clone().greater_equal(kb.clone()), h.clone(), kb.clone());
    let when_positive = core.clone() + norm_cdf(-max_hk);
    let lower = select(
        h.clone().lower_elem(0.0),
        norm_cdf(kb.clone()) - norm_cdf(h.clone()),
        norm_cdf(-h.clone()) - norm_cdf(-kb.clone()),
    );
    let when_negative = select(h.greater_equal(kb), -core.clone(), lower - core);
    select(positive, when_positive, when_negative)
}

/// Branch |ρ| = 1: X = ±Y exactly.
fn orthant_degenerate(h: Tensor<1>, k: Tensor<1>, r: Tensor<1>) -> Tensor<1> {
    let max_hk = select(h.clone().greater_equal(k.clone()), h.clone(), k.clone());
    let anti = (norm_cdf(-k) - norm_cdf(h)).clamp_min(0.0);
    select(r.greater_elem(0.0), norm_cdf(-max_hk), anti)
}

/// Upper orthant probability P[X > h, Y > k] for standard normals with correlation r (Genz's
/// BVNU). Each element goes to the branch and rule its |r| calls for, evaluated on just the
/// elements in that range.
fn upper_orthant(h: Tensor<1>, k: Tensor<1>, r: Tensor<1>) -> Tensor<1> {
    let abs_r = r.clone().abs();
    let mut out = h.zeros_like();
    let ranges = [
        (0.0, 0.3),
        (0.3, 0.75),
        (0.75, RHO_SWITCH),
        (RHO_SWITCH, 1.0),
        (1.0, f64::INFINITY),
    ];
    for (branch, (lo, hi)) in ranges.into_iter().enumerate() {
        let within = abs_r
            .clone()
            .greater_equal_elem(lo)
            .bool_and(abs_r.clone().lower_elem(hi));
        let within = if hi.is_infinite() {
            abs_r.clone().greater_equal_elem(lo)
        } else {
            within
        };
        // `nonzero` gives no index tensor at all when nothing is set.
        let Some(idx) = within.nonzero().into_iter().next() else {
            continue;
        };
        if idx.dims()[0] == 0 {
            continue;
        }
        let (hs, ks, rs) = (
            h.clone().select(0, idx.clone()),
            k.clone().select(0, idx.clone()),
            r.clone().select(0, idx.clone()),
        );
        let values = match branch {
            0 => orthant_integral(hs, ks, rs, &GL6.0, &GL6.1),
            1 => orthant_integral(hs, ks, rs, &GL12.0, &GL12.1),
            2 => orthant_integral(hs, ks, rs, &GL_NODES, &GL_WEIGHTS),
            3 => orthant_near_one(hs, ks, rs),
            _ => orthant_degenerate(hs, ks, rs),
        };
        out = out.select_assign(0, idx, values, IndexingUpdateOp::Assign);
    }
    out.clamp(0.0, 1.0)
}

/// Φ₂(h, k; ρ) = P[X ≤ h, Y ≤ k] for standard normals with correlation ρ, elementwise.
///
/// # Shapes
/// `h`, `k`, `rho` of one shape; returns that shape
pub fn bivariate_norm_cdf<const D: usize>(h: Tensor<D>, k: Tensor<D>, rho: Tensor<D>) -> Tensor<D> {
    let dims = h.dims();
    let len: usize = dims.iter().product();
    let flat = |t: Tensor<D>| t.reshape([len]);
    let h = flat(h).clamp(-ARG_CLAMP, ARG_CLAMP);
    let k = flat(k).clamp(-ARG_CLAMP, ARG_CLAMP);
    upper_orthant(-h, -k, flat(rho).clamp(-1.0, 1.0)).reshape(dims)
}

/// M = E[u⁺v⁺] for (u, v) bivariate normal with means (z_u, z_v), standard deviations
/// (s_u, s_v) and correlation ρ, elementwise, in the unscaled form that keeps the s → 0 limit:
///
/// M = (z_u z_v + ρ s_u s_v) Φ₂(a, b; ρ) + z_u s_v φ(b) Φ(t_a) + z_v s_u φ(a) Φ(t_b)
///     + ρ̄ s_u s_v φ(a) φ(t_b),   a = z_u/s_u, b = z_v/s_v, ρ̄ = √(1 − ρ²).
///
/// Its autodiff graph is a few operations long: the value and the five partial derivatives are
/// computed on detached inputs, and the result is M + Σ_θ ∂M/∂θ · (θ − stop_gradient(θ)), whose
/// value is M and whose gradient is the analytic one (differentiating through the quadrature
/// would keep hundreds of intermediates per pair alive for the backward pass).
/// With X, Y standard normals of correlation ρ, U = z_u + s_u X, V = z_v + s_v Y, t_a = (a − ρb)/ρ̄,
/// t_b = (b − ρa)/ρ̄:
/// - ∂M/∂z_u = E[1{U > 0} V⁺] = z_v Φ₂ + s_v φ(b) Φ(t_a) + ρ s_v φ(a) Φ(t_b)
/// - ∂M/∂s_u = E[X 1{U > 0} V⁺] = φ(a)(z_v − ρ a s_v) Φ(t_b) + ρ̄ s_v φ(a) φ(t_b) + ρ s_v Φ₂
///   (Stein's lemma)
/// - ∂M/∂ρ = s_u s_v Φ₂(a, b; ρ) (Price's theorem), and symmetrically for v.
pub fn relu_product_moment<const D: usize>(
    z_u: Tensor<D>,
    s_u: Tensor<D>,
    z_v: Tensor<D>,
    s_v: Tensor<D>,
    rho: Tensor<D>,
) -> Tensor<D> {
    let (zu, su, zv, sv) = (
        z_u.clone().detach(),
        s_u.clone().detach(),
        z_v.clone().detach(),
        s_v.clone().detach(),
    );
    let r = rho.clone().detach().clamp(-1.0, 1.0);
    let a = (zu.clone() / su.clone().clamp_min(S_FLOOR)).clamp(-ARG_CLAMP, ARG_CLAMP);
    let b = (zv.clone() / sv.clone().clamp_min(S_FLOOR)).clamp(-ARG_CLAMP, ARG_CLAMP);
    let rb = (-r.clone().square() + 1.0).clamp_min(S_FLOOR).sqrt();
    let ta = ((a.clone() - r.clone() * b.clone()) / rb.clone()).clamp(-ARG_CLAMP, ARG_CLAMP);
    let tb = ((b.clone() - r.clone() * a.clone()) / rb.clone()).clamp(-ARG_CLAMP, ARG_CLAMP);
    let phi2 = bivariate_norm_cdf(a.clone(), b.clone(), r.clone());
    let (pa, pb) = (norm_pdf(a.clone()), norm_pdf(b.clone()));
    let (ca, cb) = (norm_cdf(ta.clone()), norm_cdf(tb.clone()));
    let (pta, ptb) = (norm_pdf(ta), norm_pdf(tb));
    let ss = su.clone() * sv.clone();
    let value = (zu.clone() * zv.clone() + r.clone() * ss.clone()) * phi2.clone()
        + zu.clone() * sv.clone() * pb.clone() * ca.clone()
        + zv.clone() * su.clone() * pa.clone() * cb.clone()
        + rb.clone() * ss.clone() * pa.clone() * ptb.clone();
    // Unscaled (z_v rather than s_v·b) so that the s → 0 limits hold: there ∂M/∂z_u = 1{z_u > 0} z_v⁺.
    let d_zu = zv.clone() * phi2.clone()
        + sv.clone() * pb.clone() * ca.clone()
        + r.clone() * sv.clone() * pa.clone() * cb.clone();
    let d_zv = zu.clone() * phi2.clone()
        + su.clone() * pa.clone() * cb.clone()
        + r.clone() * su.clone() * pb.clone() * ca.clone();
    let d_su = pa.clone() * (zv - r.clone() * a.clone() * sv.clone()) * cb
        + rb.clone() * sv.clone() * pa * ptb
        + r.clone() * sv.clone() * phi2.clone();
    let d_sv = pb.clone() * (zu - r.clone() * b * su.clone()) * ca
        + rb * su.clone() * pb * pta
        + r * su.clone() * phi2.clone();
    let d_rho = ss * phi2;
    let delta = |t: Tensor<D>| t.clone() - t.detach();
    value
        + d_zu * delta(z_u)
        + d_su * delta(s_u)
        + d_zv * delta(z_v)
        + d_sv * delta(s_v)
        + d_rho * delta(rho)
}

/// The exact decomposition (A) per replica: ½ Σ_i (f̃_i − y_i)² and ½ Σ_i V_i. A tensor
/// expression, so it trains like any Burn loss (see `examples/exact_loss.rs`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use gaussmask_smooth::expected::ExactLoss;
/// use gaussmask_smooth::tensor::kappa_tensor;
///
/// let device = Device::flex();
/// // One replica, m = 2 neurons, d = 3, two samples.
/// let w = Tensor::<3>::from_floats([[[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]]], &device);
/// let a = Tensor::<2>::from_floats([[1.0, -1.0]], &device);
/// let x = Tensor::<3>::from_floats([[[1.0, 0.5, -1.0], [0.2, -0.3, 0.8]]], &device);
/// let y = Tensor::<2>::from_floats([[0.1, -0.2]], &device);
/// let at = |kappa| {
///     let loss = ExactLoss::new(w.clone(), a.clone(), x.clone(), y.clone(), kappa_tensor(&[kappa], &device), 64);
///     (loss.total().into_scalar::<f64>(), loss.variance.into_scalar::<f64>())
/// };
/// let (clean, no_variance) = at(0.0);
/// assert_eq!(no_variance, 0.0); // κ = 0: no mask, no variance term
/// let (masked, variance) = at(0.5);
/// assert!(variance > 0.0 && masked != clean);
/// ```
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
