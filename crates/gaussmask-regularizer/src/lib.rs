//! The decomposition of the expected masked loss (SPEC §3): E_c L = smoothed SSE + variance term
//! (exact, (A)), its proxy = smoothed SSE with σ̂ + quadratic regularizer ((B)), the link (C)
//! between them, and Monte-Carlo estimates (with standard errors) to check each against.

use burn::tensor::{Device, Tensor};
use gaussmask_core::rng::{derive_seed, tag};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{InputMask, MaskConfig, Replica, TwoLayerRelu, half_sse};
use gaussmask_smooth::expected::ExactLoss;
use gaussmask_smooth::tensor::{ProxyLoss, kappa_tensor, proxy_output, smoothed_output};
use serde::{Deserialize, Serialize};

/// A Monte-Carlo estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean.
    pub se: f64,
    /// Number of draws.
    pub samples: usize,
}

impl Estimate {
    /// From running sums of x and x².
    pub fn from_sums(sum: f64, sum_sq: f64, samples: usize) -> Self {
        let k = samples as f64;
        let mean = sum / k;
        let var = if samples > 1 {
            ((sum_sq - k * mean * mean) / (k - 1.0)).max(0.0)
        } else {
            f64::NAN
        };
        Self {
            mean,
            se: (var / k).sqrt(),
            samples,
        }
    }

    /// Whether `value` lies in the 95% interval mean ± 1.96 se.
    pub fn covers(&self, value: f64) -> bool {
        (value - self.mean).abs() <= 1.96 * self.se
    }
}

/// Every term of the decomposition for one network (replica), all as ½ Σ_i over the samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    /// Mask level κ.
    pub kappa: f64,
    /// Clean loss ½ Σ (f − y)².
    pub clean: f64,
    /// Exact expected masked loss E_c ½ Σ (f(x ⊙ c) − y)² = `smoothed_sse` + `variance` (A).
    pub exact: f64,
    /// ½ Σ (f̃ − y)², f̃ the smoothed network.
    pub smoothed_sse: f64,
    /// ½ Σ V_i, V_i = Var_c f(x_i ⊙ c).
    pub variance: f64,
    /// Proxy objective = `proxy_sse` + `regularizer` (B).
    pub proxy: f64,
    /// ½ Σ (f̂ − y)², f̂ the proxy network.
    pub proxy_sse: f64,
    /// ½ Σ R_i, R_i = (κ²/m) ‖(Σ_r a_r Φ(α_ri) w_r) ⊙ x_i‖².
    pub regularizer: f64,
    /// ½ Σ [V_i + (f̃_i − f̂_i)(f̃_i + f̂_i − 2y_i)] = `exact` − `proxy_sse` (C).
    pub link: f64,
    /// Monte Carlo of the masked loss, the quantity (A) is exact for.
    pub mc_masked: Option<Estimate>,
    /// Monte Carlo of the linearized network's loss, the quantity (B) is exact for.
    pub mc_linearized: Option<Estimate>,
}

/// How much Monte Carlo to do, and with which seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonteCarlo {
    /// Masks drawn (0 = none).
    pub samples: usize,
    /// Seed of the mask stream.
    pub seed: u64,
}

impl MonteCarlo {
    /// A mask of `config` for replicas of noise levels `kappas`, replica i's stream keyed by a
    /// seed derived from (seed, i).
    fn mask(&self, config: &MaskConfig, kappas: &[f64]) -> InputMask {
        let replicas: Vec<Replica> = (0..kappas.len() as u64)
            .zip(kappas)
            .map(|(i, &kappa)| Replica {
                kappa,
                seed: derive_seed(self.seed, tag::MONTE_CARLO, &[i]),
            })
            .collect();
        config.init_replicas(&replicas)
    }
}

/// The decomposition for every replica of `model` on data `x`, `y`.
///
/// # Shapes
/// - `x`: `[1, n, d]`, `y`: `[1, n]`; the model's W is `[R, m, d]`; returns R entries
pub fn decompose(
    model: &TwoLayerRelu,
    x: Tensor<3>,
    y: Tensor<2>,
    mc: MonteCarlo,
    sample_chunk: usize,
    device: &Device,
) -> Vec<Decomposition> {
    let kappas = model.mask.kappa.clone();
    let r = kappas.len();
    let kappa = kappa_tensor(&kappas, device);
    let (w, a) = (model.w.val(), model.a.val());
    let clean = to_f64(half_sse(model.forward_unmasked(x.clone()), y.clone()));
    let exact = ExactLoss::new(
        w.clone(),
        a.clone(),
        x.clone(),
        y.clone(),
        kappa.clone(),
        sample_chunk,
    );
    let proxy = ProxyLoss::new(w.clone(), a.clone(), x.clone(), y.clone(), kappa.clone());
    let f_tilde = smoothed_output(w.clone(), a.clone(), x.clone(), kappa.clone());
    let f_hat = proxy_output(w, a, x.clone(), kappa);
    let cross = ((f_tilde.clone() - f_hat.clone()) * (f_tilde + f_hat - y.clone() * 2.0))
        .sum_dim(1)
        .reshape([r])
        * 0.5;
    let (smoothed_sse, variance) = (to_f64(exact.smoothed_sse), to_f64(exact.variance));
    let (proxy_sse, regularizer) = (to_f64(proxy.smoothed_sse), to_f64(proxy.regularizer));
    let cross = to_f64(cross);
    let (mc_masked, mc_linearized) = if mc.samples > 0 {
        let (m, l) = monte_carlo(model, x, y, mc, device);
        (
            m.into_iter().map(Some).collect(),
            l.into_iter().map(Some).collect(),
        )
    } else {
        (vec![None; r], vec![None; r])
    };
    (0..r)
        .map(|i| Decomposition {
            kappa: kappas[i],
            clean: clean[i],
            exact: smoothed_sse[i] + variance[i],
            smoothed_sse: smoothed_sse[i],
            variance: variance[i],
            proxy: proxy_sse[i] + regularizer[i],
            proxy_sse: proxy_sse[i],
            regularizer: regularizer[i],
            link: variance[i] + cross[i],
            mc_masked: mc_masked[i],
            mc_linearized: mc_linearized[i],
        })
        .collect()
}

/// Monte-Carlo estimates, per replica, of the masked loss and of the linearized network's loss
/// f_lin(x ⊙ c) = (1/√m) Σ_r a_r Φ(α_r) w_rᵀ(x ⊙ c), the gates taken at the clean input.
fn monte_carlo(
    model: &TwoLayerRelu,
    x: Tensor<3>,
    y: Tensor<2>,
    mc: MonteCarlo,
    device: &Device,
) -> (Vec<Estimate>, Vec<Estimate>) {
    let [r, m, d] = model.dims();
    let n = x.dims()[1];
    let kappas = model.mask.kappa.clone();
    // Gaussian masks, as in SPEC §3.
    let mask = mc.mask(&MaskConfig::default(), &kappas);
    let rows: Vec<usize> = (0..n).collect();
    // Linearized readout G_i = (1/√m) Σ_r a_r Φ(α_ri) w_r, [R, n, d].
    let (z, s) = gaussmask_smooth::tensor::preactivations(
        model.w.val(),
        x.clone(),
        kappa_tensor(&kappas, device),
    );
    let gate =
        gaussmask_smooth::tensor::norm_cdf(z / s.clamp_min(gaussmask_smooth::tensor::S_FLOOR));
    let g = (gate * model.a.val().unsqueeze_dim::<3>(1)).matmul(model.w.val())
        * (1.0 / (m as f64).sqrt());
    let (mut sm, mut sm2) = (vec![0.0; r], vec![0.0; r]);
    let (mut sl, mut sl2) = (vec![0.0; r], vec![0.0; r]);
    for _ in 0..mc.samples {
        let c = mask.sample(&rows, d);
        let xc = InputMask::apply(x.clone(), c, r, device);
        let masked = to_f64(half_sse(model.forward_unmasked(xc.clone()), y.clone()));
        let f_lin = (xc * g.clone()).sum_dim(2).reshape([r, n]);
        let lin = to_f64(half_sse(f_lin, y.clone()));
        for i in 0..r {
            sm[i] += masked[i];
            sm2[i] += masked[i] * masked[i];
            sl[i] += lin[i];
            sl2[i] += lin[i] * lin[i];
        }
    }
    let est = |s: &[f64], s2: &[f64]| {
        (0..r)
            .map(|i| Estimate::from_sums(s[i], s2[i], mc.samples))
            .collect()
    };
    (est(&sm, &sm2), est(&sl, &sl2))
}

/// Builds a one-replica-per-κ model from host weights (the same W and a for every κ).
pub fn model_for_kappas(
    w: &[f64],
    a: &[f64],
    width: usize,
    d: usize,
    kappas: &[f64],
    device: &Device,
) -> TwoLayerRelu {
    let r = kappas.len();
    let ws: Vec<f64> = (0..r).flat_map(|_| w.iter().copied()).collect();
    let as_: Vec<f64> = (0..r).flat_map(|_| a.iter().copied()).collect();
    TwoLayerRelu::from_weights(
        ws,
        as_,
        [r, width, d],
        false,
        MaskConfig::default().init_replicas(
            &kappas
                .iter()
                .map(|&kappa| Replica { kappa, seed: 0 })
                .collect::<Vec<_>>(),
        ),
        device,
    )
}

/// How the masked gradient relates to the gradients of the closed forms, per replica: its
/// Monte-Carlo mean against ∇E_c L (A), the clean gradient and ∇L_proxy (B), and its spread.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradientProbe {
    /// Mask level κ.
    pub kappa: f64,
    /// Masks drawn.
    pub samples: usize,
    /// ‖ḡ − ∇(A)‖, ḡ the mean masked gradient: zero in expectation (unbiased).
    pub bias_exact: f64,
    /// The size ‖ḡ − ∇(A)‖ has from sampling alone: √(Σ_j se_j²).
    pub noise_floor: f64,
    /// ‖ḡ − ∇ clean loss‖.
    pub bias_clean: f64,
    /// ‖ḡ − ∇(B)‖.
    pub bias_proxy: f64,
    /// ‖∇(A)‖, for scale.
    pub exact_norm: f64,
    /// E‖g‖²: second moment of one masked gradient.
    pub second_moment: f64,
    /// E‖g − ḡ‖²: its variance (summed over entries).
    pub variance: f64,
}

fn norm(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|t| t * t).sum::<f64>().sqrt()
}

/// Monte-Carlo probe of the masked gradient with respect to W for every replica of `model`
/// (which must live on an autodiff device).
///
/// # Shapes
/// - `x`: `[1, n, d]`, `y`: `[1, n]`
pub fn gradient_probe(
    model: &TwoLayerRelu,
    x: Tensor<3>,
    y: Tensor<2>,
    mc: MonteCarlo,
    sample_chunk: usize,
    device: &Device,
) -> Vec<GradientProbe> {
    let [r, m, d] = model.dims();
    let size = m * d;
    let kappas = model.mask.kappa.clone();
    let grad_of = |loss: Tensor<1>| {
        let grads = loss.sum().backward();
        to_f64(model.w.val().grad(&grads).expect("W takes gradients"))
    };
    let (w, a) = (model.w.val(), model.a.val());
    let kappa = kappa_tensor(&kappas, device);
    let exact = grad_of(
        ExactLoss::new(
            w.clone(),
            a.clone(),
            x.clone(),
            y.clone(),
            kappa.clone(),
            sample_chunk,
        )
        .total(),
    );
    let proxy = grad_of(ProxyLoss::new(w, a, x.clone(), y.clone(), kappa).total());
    let clean = grad_of(half_sse(model.forward_unmasked(x.clone()), y.clone()));
    let mask = mc.mask(&model.mask.config, &kappas);
    let (mut sum, mut sum2) = (vec![0.0; r * size], vec![0.0; r * size]);
    for _ in 0..mc.samples {
        let g = grad_of(half_sse(
            model.forward_unmasked(mask.forward(x.clone())),
            y.clone(),
        ));
        for (k, v) in g.iter().enumerate() {
            sum[k] += v;
            sum2[k] += v * v;
        }
    }
    let s = mc.samples as f64;
    (0..r)
        .map(|i| {
            let range = i * size..(i + 1) * size;
            let mean: Vec<f64> = sum[range.clone()].iter().map(|v| v / s).collect();
            let var: Vec<f64> = range
                .clone()
                .zip(&mean)
                .map(|(k, mu)| (sum2[k] / s - mu * mu).max(0.0) * s / (s - 1.0))
                .collect();
            let diff =
                |other: &[f64]| norm(mean.iter().zip(&other[range.clone()]).map(|(p, q)| p - q));
            GradientProbe {
                kappa: kappas[i],
                samples: mc.samples,
                bias_exact: diff(&exact),
                noise_floor: (var.iter().sum::<f64>() / s).sqrt(),
                bias_clean: diff(&clean),
                bias_proxy: diff(&proxy),
                exact_norm: norm(exact[range.clone()].iter().copied()),
                second_moment: sum2[range.clone()].iter().sum::<f64>() / s,
                variance: var.iter().sum(),
            }
        })
        .collect()
}
