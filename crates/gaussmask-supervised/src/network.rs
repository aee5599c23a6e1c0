//! The trained network: the paper's two-layer net, or an MLP / CNN of `burn::nn` layers, behind
//! the input mask, with the loss of its task; built from the config, evaluated in batches.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::image::{ImageModelConfig, MaskedNet};
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_nn::{Replica, TwoLayerRelu, TwoLayerReluConfig};
use gaussmask_train::classify::clipped_gradient_sum;
use gaussmask_train::fit::{Batch, Trainable};

use crate::config::{ModelConfig, ModelKind, Task};

/// The network of a model: the config's `model.kind`.
#[derive(Module, Debug)]
pub enum Net {
    /// The paper's two-layer ReLU network (one replica).
    TwoLayer(TwoLayerRelu),
    /// An MLP or CNN (mask, `burn::nn` layers).
    Image(MaskedNet),
}

/// One model of a run: its network and the loss of its task.
#[derive(Module, Debug)]
pub struct Network {
    /// The network behind its input mask.
    pub net: Net,
    /// Regression (one output, squared error) or classification (logits, cross-entropy).
    #[module(skip)]
    pub task: Task,
}

/// What a network is built for: the inputs' shape and the number of outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Input shape (channels, height, width); `[1, 1, d]` for flat inputs.
    pub shape: [usize; 3],
    /// Outputs: 1 for regression, the classes for classification.
    pub outputs: usize,
}

impl Network {
    /// A fresh network of `model` for `dims` and `task`, behind a mask of level `kappa`; the
    /// weights and the mask's stream are drawn from `seed`.
    pub fn init(
        model: &ModelConfig,
        dims: Dims,
        task: Task,
        kappa: f64,
        seed: u64,
        label_smoothing: f64,
        device: &Device,
    ) -> Self {
        let d: usize = dims.shape.iter().product();
        let image = |config: ImageModelConfig| {
            Net::Image(
                config
                    .init(dims.shape, dims.outputs, kappa, seed, device)
                    .with_label_smoothing(label_smoothing),
            )
        };
        let net = match &model.kind {
            ModelKind::TwoLayer(two) => {
                let config = TwoLayerReluConfig {
                    input_dim: d,
                    width: two.width,
                    tau: two.tau,
                    train_output: two.train_output,
                    mask: model.mask.clone(),
                };
                Net::TwoLayer(config.init(&[Replica { kappa, seed }], device))
            }
            ModelKind::Mlp(mlp) => image(mlp.image(&model.mask)),
            ModelKind::Cnn(cnn) => image(cnn.image(&model.mask)),
        };
        Self { net, task }
    }

    /// Outputs of the samples whose dataset indices are `rows`, masked in training mode, clean
    /// after `valid()`: the standardized prediction (regression) or the logits.
    ///
    /// # Shapes
    /// - `x`: `[b, d]`, `rows`: b indices; returns `[b, 1]` (regression) or `[b, classes]`
    pub fn forward_indexed(&self, x: Tensor<2>, rows: &[usize]) -> Tensor<2> {
        match &self.net {
            Net::TwoLayer(net) => net.forward(x.unsqueeze_dim::<3>(0), rows).swap_dims(0, 1),
            Net::Image(net) => net.forward_indexed(x, rows),
        }
    }
}

impl Trainable for Network {
    /// Regression: the mean squared error of the masked prediction. Classification: the
    /// cross-entropy of the logits (with the label smoothing of the config).
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        match (self.task, &self.net) {
            (Task::Classification, Net::Image(net)) => net.loss(batch),
            (Task::Classification, Net::TwoLayer(_)) => {
                unreachable!("validate refuses the two-layer network for classification")
            }
            (Task::Regression, _) => {
                let b = batch.rows.len();
                let f = self
                    .forward_indexed(batch.x.clone(), &batch.rows)
                    .reshape([b]);
                (f - batch.y.clone()).square().mean().reshape([1])
            }
        }
    }

    /// The MLP's and CNN's in one pass ([`clipped_gradient_sum`]), under the task's loss; the
    /// two-layer network takes DP-SGD's per-sample loop.
    fn clipped_gradient_sum(
        &self,
        batch: &Batch,
        clip: f64,
    ) -> Option<(Tensor<1>, GradientsParams)> {
        let Net::Image(net) = &self.net else {
            return None;
        };
        match self.task {
            Task::Classification => net.clipped_gradient_sum(batch, clip),
            Task::Regression => clipped_gradient_sum(net, batch, clip, |f| {
                let b = batch.rows.len();
                (f.reshape([b]) - batch.y.clone())
                    .square()
                    .mean()
                    .reshape([1])
            }),
        }
    }
}

/// Rows per evaluation batch.
const EVAL_BATCH: usize = 1000;

/// Outputs of the evaluation model `net` (after `valid()`) on every row of `data`, row-major
/// `[n, outputs]`, in f64.
pub fn outputs(net: &Network, data: &Dataset, device: &Device) -> Vec<f64> {
    let mut out = Vec::new();
    let rows: Vec<usize> = (0..data.n).collect();
    for chunk in rows.chunks(EVAL_BATCH) {
        let d = data.d;
        let x = from_f64(
            data.x[chunk[0] * d..(chunk[chunk.len() - 1] + 1) * d].to_vec(),
            [chunk.len(), d],
            device,
        );
        let y = net.forward_indexed(x, chunk);
        out.extend(match net.task {
            Task::Regression => to_f64(y),
            Task::Classification => to_f64(log_softmax(y, 1)),
        });
    }
    out
}

/// Loss and metric of outputs `out` (from [`outputs`]) against `data.y`: regression, the
/// mean squared error in the target's units (`scale` = its standard deviation) twice;
/// classification, the mean cross-entropy and the accuracy.
pub fn score(task: Task, out: &[f64], data: &Dataset, scale: f64) -> (f64, f64) {
    let n = data.n.max(1) as f64;
    match task {
        Task::Regression => {
            let mse = out
                .iter()
                .zip(&data.y)
                .map(|(f, y)| (f - y) * (f - y))
                .sum::<f64>()
                / n
                * scale
                * scale;
            (mse, mse)
        }
        Task::Classification => {
            let k = out.len() / data.n.max(1);
            let (mut loss, mut hits) = (0.0, 0usize);
            for (logp, &y) in out.chunks_exact(k).zip(&data.y) {
                let y = y as usize;
                loss -= logp[y];
                hits += usize::from(argmax(logp) == y);
            }
            (loss / n, hits as f64 / n)
        }
    }
}

/// The index of the largest value (the first one of ties).
pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (k, &v)| {
            if v > best.1 { (k, v) } else { best }
        })
        .0
}
