//! ReLU MLPs of any depth behind the input mask, in the NTK parameterization: the two-layer
//! network is the depth-2 case (same initial W_1 and a, same output), deeper ones add hidden
//! layers h_l = ReLU(√(2/m) W_l h_{l−1}) with W_l ~ N(0, 1) entries.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use gaussmask_cpu_ops::relu_matmul;

use crate::mask::{InputMask, Replica};
use crate::rng::{Stream, tag};
use crate::tensor_io::from_f64;
use crate::two_layer::TwoLayerReluConfig;

/// R replicas of a ReLU MLP with `depth` weight layers (the output layer included).
#[derive(Module, Debug)]
pub struct DeepRelu {
    /// The hidden layers' weights transposed: W_1ᵀ `[R, d, m]`, then W_lᵀ `[R, m, m]` for
    /// l = 2 … depth − 1. Stored as the right operand of h·Wᵀ, so the gradient comes out of
    /// the backward product in the parameter's own layout (a transposed view would send every
    /// optimizer step through Burn's strided element-wise path).
    pub layers: Vec<Param<Tensor<3>>>,
    /// Output signs a `[R, m]`, frozen.
    pub a: Param<Tensor<2>>,
    /// Input mask applied in training mode.
    pub mask: InputMask,
}

/// Builds a depth-`depth` MLP of `config`'s width, init scale of W_1 and mask for `replicas`.
/// W_1 and a are the two-layer network's ([`TwoLayerReluConfig::initial_weights`]).
///
/// # Panics
/// If `depth < 2`.
pub fn deep_init(
    config: &TwoLayerReluConfig,
    depth: usize,
    replicas: &[Replica],
    device: &Device,
) -> DeepRelu {
    assert!(depth >= 2, "depth counts weight layers: at least 2");
    let (r, m, d) = (replicas.len(), config.width, config.input_dim);
    let (mut first, mut a) = (Vec::new(), Vec::new());
    let mut hidden = vec![Vec::new(); depth - 2];
    for rep in replicas {
        let (w, ar) = config.initial_weights(rep.seed);
        first.extend(transposed(&w, m, d));
        a.extend(ar);
        let stream = Stream::new(rep.seed, tag::INIT);
        for (l, layer) in hidden.iter_mut().enumerate() {
            let mut w = vec![0.0; m * m];
            stream.substream(l as u64 + 1).fill_normal(&mut w);
            layer.extend(transposed(&w, m, m));
        }
    }
    let mut layers = vec![Param::from_tensor(from_f64(first, [r, d, m], device))];
    layers.extend(
        hidden
            .into_iter()
            .map(|w| Param::from_tensor(from_f64(w, [r, m, m], device))),
    );
    DeepRelu {
        layers,
        a: Param::from_tensor(from_f64(a, [r, m], device)).set_require_grad(false),
        mask: config.mask.init_replicas(replicas).to_device(device),
    }
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
fn transposed(w: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| w[i * cols + j]))
        .collect()
}

impl DeepRelu {
    /// Weight layers, the output layer included.
    pub fn depth(&self) -> usize {
        self.layers.len() + 1
    }

    /// Output without the mask: on clean inputs, or on inputs masked elsewhere.
    ///
    /// # Shapes
    /// - `x`: `[R, n, d]` or `[1, n, d]`
    /// - returns `[R, n]`
    pub fn forward_unmasked(&self, x: Tensor<3>) -> Tensor<2> {
        let [r, d, m] = self.layers[0].val().dims();
        let n = x.dims()[1];
        let x = if x.dims()[0] == r {
            x
        } else {
            x.expand([r, n, d])
        };
        // Each layer one node on flex: the product written once, its scale and relu in cache
        // (bit-identical to Burn's chain).
        let mut h = relu_matmul(x, self.layers[0].val(), 1.0);
        let hidden_scale = (2.0 / m as f64).sqrt();
        for w in &self.layers[1..] {
            h = relu_matmul(h, w.val(), hidden_scale);
        }
        let out = h.matmul(self.a.val().unsqueeze_dim::<3>(2)); // [R, n, 1]
        out.reshape([r, n]) * (1.0 / (m as f64).sqrt())
    }

    /// Output on freshly masked inputs (the mask is the identity after `valid()`).
    ///
    /// # Shapes
    /// - `x`: `[1, n, d]` or `[R, n, d]`, `rows`: dataset indices of the n samples
    /// - returns `[R, n]`
    pub fn forward(&self, x: Tensor<3>, rows: &[usize]) -> Tensor<2> {
        self.forward_unmasked(self.mask.forward_indexed(x, rows))
    }
}
