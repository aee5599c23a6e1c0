//! Training with randomly masked neurons (Liao & Kyrillidis): at each round, p subnetworks each
//! keep a subset of the neurons, train τ_local GD steps from the current weights, and the
//! round's weights are the per-neuron average over the subnetworks that kept the neuron
//! (neurons kept by none stay as they were). Host f64, two-layer ReLU net with fixed signs.

use gaussmask_data::Dataset;
use gaussmask_nn::MaskConfig;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_train::reference::two_layer_gradient;

/// How the subnetworks pick their neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Each neuron kept independently with probability ξ by each subnetwork (dropout for p = 1,
    /// τ_local = 1; multi-sample dropout for p > 1, τ_local = 1).
    Bernoulli,
    /// Independent subnetwork training: a random partition of the neurons into p parts (ξ = 1/p).
    Ist,
}

impl std::fmt::Display for Scheme {
    /// The config spelling (padded to the formatter's width, for tables).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Scheme::Bernoulli => "bernoulli",
            Scheme::Ist => "ist",
        })
    }
}

/// One training setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setting {
    /// How neurons are picked.
    pub scheme: Scheme,
    /// Subnetworks per round.
    pub p: usize,
    /// Local GD steps per subnetwork and round.
    pub tau_local: usize,
    /// Keep probability ξ (Bernoulli; IST uses 1/p).
    pub xi: f64,
    /// Input-mask κ (0 = none), a fresh mask per sample and local step.
    pub kappa: f64,
    /// Rounds.
    pub rounds: usize,
    /// Learning rate of the local steps.
    pub lr: f64,
}

/// W `[m, d]` and the fixed signs a `[m]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    /// First layer, row-major.
    pub w: Vec<f64>,
    /// Output signs.
    pub a: Vec<f64>,
}

/// The gradient of ½ Σ_i (f_ν(x̃_i) − y_i)² with f_ν(x) = (scale/√m) Σ_r ν_r a_r ReLU(w_rᵀx)
/// with respect to W, into `grad` (`[m, d]`); returns the loss. `keep[r]` is ν_r.
pub fn masked_gradient(
    net: &Net,
    keep: &[bool],
    scale: f64,
    x: &[f64],
    y: &[f64],
    grad: &mut [f64],
) -> f64 {
    two_layer_gradient(&net.w, &net.a, Some(keep), scale, x, y, grad)
}

/// Clean full-network loss ½ Σ (f(x_i) − y_i)².
pub fn clean_loss(net: &Net, data: &Dataset) -> f64 {
    let mut scratch = vec![0.0; net.w.len()];
    masked_gradient(
        net,
        &vec![true; net.a.len()],
        1.0,
        &data.x,
        &data.y,
        &mut scratch,
    )
}

/// Neuron masks of one round: `p` vectors of m booleans.
fn round_masks(setting: &Setting, m: usize, stream: &mut Stream) -> Vec<Vec<bool>> {
    match setting.scheme {
        Scheme::Bernoulli => (0..setting.p)
            .map(|_| (0..m).map(|_| stream.uniform() < setting.xi).collect())
            .collect(),
        Scheme::Ist => {
            let mut order: Vec<usize> = (0..m).collect();
            stream.shuffle(&mut order);
            let mut masks = vec![vec![false; m]; setting.p];
            for (k, r) in order.into_iter().enumerate() {
                masks[k % setting.p][r] = true;
            }
            masks
        }
    }
}

/// Trains `net` on `data`; returns the clean loss before each round and after the last.
///
/// `seed` drives the neuron masks and the input masks.
pub fn train(net: &mut Net, data: &Dataset, setting: &Setting, seed: u64) -> Vec<f64> {
    let (m, d) = (net.a.len(), data.d);
    let xi = match setting.scheme {
        Scheme::Bernoulli => setting.xi,
        Scheme::Ist => 1.0 / setting.p as f64,
    };
    // Inverted-dropout scaling: each subnetwork's output is unbiased for the full network's.
    let scale = 1.0 / xi;
    let mut neuron_stream = Stream::new(seed, tag::BATCH);
    let input_mask = MaskConfig::default().init(setting.kappa, seed);
    let all_rows: Vec<usize> = (0..data.n).collect();
    let mut grad = vec![0.0; m * d];
    let mut x_masked = data.x.clone();
    let mut losses = Vec::with_capacity(setting.rounds + 1);
    for _ in 0..setting.rounds {
        losses.push(clean_loss(net, data));
        let masks = round_masks(setting, m, &mut neuron_stream);
        let mut sum = vec![0.0; m * d];
        let mut count = vec![0usize; m];
        for keep in &masks {
            let mut local = net.clone();
            for _ in 0..setting.tau_local {
                let x = if setting.kappa > 0.0 {
                    let c = input_mask.sample(&all_rows, d);
                    for ((v, &x0), c) in x_masked.iter_mut().zip(&data.x).zip(c) {
                        *v = x0 * c;
                    }
                    &x_masked
                } else {
                    &data.x
                };
                masked_gradient(&local, keep, scale, x, &data.y, &mut grad);
                for (w, g) in local.w.iter_mut().zip(&grad) {
                    *w -= setting.lr * g;
                }
            }
            for r in (0..m).filter(|&r| keep[r]) {
                count[r] += 1;
                for (s, w) in sum[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(&local.w[r * d..(r + 1) * d])
                {
                    *s += w;
                }
            }
        }
        for r in (0..m).filter(|&r| count[r] > 0) {
            for (w, s) in net.w[r * d..(r + 1) * d]
                .iter_mut()
                .zip(&sum[r * d..(r + 1) * d])
            {
                *w = s / count[r] as f64;
            }
        }
    }
    losses.push(clean_loss(net, data));
    losses
}
