//! R image MLPs of one architecture trained as one model (LiRA's shadow models): each dense
//! layer's weights stacked along a replica axis, so a step is one batched product per layer
//! whatever R, and each replica sees its own samples and its own mask.

use burn::module::{Module, Param};
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{Dropout, Initializer, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, tanh};

use super::{Activation, MaskedNet};
use crate::mask::{InputMask, MaskState, Replica};

/// R replicas of an MLP [`MaskedNet`] (no conv blocks), trained together, each on its own
/// samples. Built from the R nets with [`MlpReplicas::stack`]; [`MlpReplicas::replica`] gives
/// net r back. Replica r computes what net r computes (the same products, one batched call
/// per layer) and draws the masks net r draws from its host stream; dropout draws once for all
/// replicas on the device.
#[derive(Module, Debug)]
pub struct MlpReplicas {
    /// The replicas' masks (one stream each).
    pub mask: InputMask,
    /// Per dense layer, the replicas' weights `[R, in, out]`; the output layer last.
    pub weights: Vec<Param<Tensor<3>>>,
    /// Per dense layer, the replicas' biases `[R, 1, out]`.
    pub biases: Vec<Param<Tensor<3>>>,
    /// Dropout after each hidden layer.
    pub dropout: Dropout,
    /// Nonlinearity of the hidden layers.
    #[module(skip)]
    pub activation: Activation,
    /// Image shape (c, h, w) of the flattened inputs.
    #[module(skip)]
    pub shape: [usize; 3],
    /// Label smoothing ε of the training loss.
    #[module(skip)]
    pub label_smoothing: f64,
}

impl MlpReplicas {
    /// The MLPs `nets` as replicas, net r as replica r: weights, biases and mask streams
    /// copied, so replica r continues where net r stands.
    ///
    /// # Panics
    /// If `nets` is empty, or holds a CNN, a layer without bias, a replicated mask, or nets that
    /// differ in layer sizes, mask family, activation, dropout, image shape or label smoothing.
    pub fn stack(nets: &[MaskedNet]) -> Self {
        let first = nets.first().expect("at least one net");
        for net in nets {
            assert!(
                net.convs.is_empty() && net.mask.replicas() == 1,
                "MlpReplicas: MLPs with one mask each"
            );
            assert!(
                net.mask.config == first.mask.config
                    && net.activation == first.activation
                    && net.shape == first.shape
                    && net.label_smoothing == first.label_smoothing
                    && net.dropout.prob == first.dropout.prob
                    && net.dense.len() == first.dense.len(),
                "MlpReplicas: nets of one architecture"
            );
        }
        let layers = first.dense.len();
        let mut weights = Vec::with_capacity(layers);
        let mut biases = Vec::with_capacity(layers);
        for l in 0..layers {
            let w = nets.iter().map(|n| n.dense[l].weight.val()).collect();
            // Detached: a parameter is a leaf of the graph, a stack of parameters is not.
            weights.push(Param::from_tensor(Tensor::stack::<3>(w, 0).detach()));
            let b = nets
                .iter()
                .map(|n| {
                    let bias = n.dense[l].bias.as_ref().expect("MlpReplicas: dense biases");
                    bias.val().unsqueeze_dim::<2>(0)
                })
                .collect();
            biases.push(Param::from_tensor(Tensor::stack::<3>(b, 0).detach()));
        }
        let replicas: Vec<Replica> = nets
            .iter()
            .map(|n| Replica {
                kappa: n.mask.kappa[0],
                seed: 0,
            })
            .collect();
        let states: Vec<MaskState> = nets.iter().map(|n| n.mask.noise_state()).collect();
        let mask = first.mask.config.init_replicas(&replicas);
        mask.load_noise_state(MaskState {
            streams: states.iter().flat_map(|s| s.streams.clone()).collect(),
            roots: states.iter().flat_map(|s| s.roots.clone()).collect(),
        })
        .expect("one stream per net");
        Self {
            mask: mask.to_device(&weights[0].val().device()),
            weights,
            biases,
            dropout: first.dropout.clone(),
            activation: first.activation,
            shape: first.shape,
            label_smoothing: first.label_smoothing,
        }
    }

    /// Number of replicas R.
    pub fn replicas(&self) -> usize {
        self.mask.replicas()
    }

    /// Replica r as the [`MaskedNet`] it stands for (weights, mask stream, dropout, label
    /// smoothing), in training mode: `valid()` it to evaluate.
    pub fn replica(&self, r: usize) -> MaskedNet {
        let device = self.weights[0].val().device();
        let dense = self
            .weights
            .iter()
            .zip(&self.biases)
            .map(|(w, b)| {
                let [_, fan_in, out] = w.val().dims();
                let mut linear = LinearConfig::new(fan_in, out)
                    .with_initializer(Initializer::Zeros)
                    .init(&device);
                let w = w.val().slice([r..r + 1, 0..fan_in, 0..out]);
                linear.weight = Param::from_tensor(w.reshape([fan_in, out]).detach());
                let b = b.val().slice([r..r + 1, 0..1, 0..out]);
                linear.bias = Some(Param::from_tensor(b.reshape([out]).detach()));
                linear
            })
            .collect();
        let state = self.mask.noise_state();
        let mask = self.mask.config.init(self.mask.kappa[r], 0);
        mask.load_noise_state(MaskState {
            streams: vec![state.streams[r]],
            roots: vec![state.roots[r]],
        })
        .expect("one stream");
        MaskedNet {
            mask: mask.to_device(&device),
            convs: Vec::new(),
            norms: Vec::new(),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: self.dropout.clone(),
            dense,
            activation: self.activation,
            shape: self.shape,
            label_smoothing: self.label_smoothing,
            cpu_ops: true,
        }
    }

    /// Logits, replica r's on its own samples: in training mode each replica's mask for its
    /// rows, then dropout; after `valid()`, clean.
    ///
    /// # Shapes
    /// - `x`: `[R, n, c·h·w]`; `rows`: R·n dataset indices, replica r's at `r·n..(r + 1)·n`;
    ///   returns `[R, n, classes]`
    pub fn forward_replica_rows(&self, x: Tensor<3>, rows: &[usize]) -> Tensor<3> {
        let mut h = self.mask.forward_replica_rows(x, rows);
        let last = self.weights.len() - 1;
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            // As `MaskedNet`'s MLP: dropout after every hidden layer.
            if i > 0 {
                h = self.dropout.forward(h);
            }
            h = h.matmul(w.val()) + b.val();
            if i < last {
                h = match self.activation {
                    Activation::Relu => relu(h),
                    Activation::Tanh => tanh(h),
                };
            }
        }
        h
    }
}
