//! Training loops for masked networks: objectives, optimizers, full-batch GD, minibatch SGD and
//! Adam, with the clean training loss logged as the paper plots it.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{MaskNoise, Replica, TwoLayerRelu, TwoLayerReluConfig, half_sse};
use gaussmask_smooth::expected::ExactLoss;
use gaussmask_smooth::tensor::{ProxyLoss, kappa_tensor};
use serde::{Deserialize, Serialize};

/// What the gradient step differentiates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// ½ Σ (f(W, x ⊙ c) − y)² with one fresh mask per step (the paper's algorithm).
    #[default]
    Masked,
    /// The average of `masks_per_step` masked losses, each on its own fresh mask.
    MaskedK,
    /// The proxy objective ½ Σ [(f̂ − y)² + R] of SPEC §3(B), in closed form: no sampling.
    Proxy,
    /// The exact expected loss E_c ½ Σ (f(W, x ⊙ c) − y)² of SPEC §3(A), in closed form.
    ExpectedExact,
    /// ½ Σ (f(W, x) − y)²: no mask.
    Clean,
}

/// Update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Plain (stochastic) gradient descent W ← W − η ∇L.
    #[default]
    Gd,
    /// Adam (Kingma & Ba).
    Adam,
}

/// Optimizer and schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of gradient steps.
    pub steps: usize,
    /// Learning rate η of the first layer.
    pub lr: f64,
    /// Learning rate of the output signs when they are trained; defaults to `lr`.
    #[serde(default)]
    pub lr_output: Option<f64>,
    /// Update rule.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Heavy-ball momentum of GD (0 = none).
    #[serde(default)]
    pub momentum: f64,
    /// Minibatch size; `None` is full-batch.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Objective differentiated at each step.
    #[serde(default)]
    pub objective: Objective,
    /// Log the clean (and masked) loss every this many steps; the last step is always logged.
    #[serde(default = "one")]
    pub log_every: usize,
    /// Samples per chunk of the `expected-exact` objective (memory grows as chunk·m²).
    #[serde(default = "default_exact_chunk")]
    pub exact_chunk: usize,
    /// Masks averaged per step by the `masked-k` objective.
    #[serde(default = "one")]
    pub masks_per_step: usize,
    /// Seed of the minibatch order, which all replicas share (so they see the same batches
    /// whatever their own seeds and whichever replicas train together).
    #[serde(default)]
    pub shuffle_seed: u64,
}

fn one() -> usize {
    1
}

fn default_exact_chunk() -> usize {
    32
}

impl TrainConfig {
    /// Checks every field; the error names the offending one.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        if self.steps == 0 {
            return Err("train.steps must be ≥ 1, got 0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "train.lr must be a finite number > 0, got {}",
                self.lr
            ));
        }
        if let Some(lr) = self.lr_output
            && !(lr.is_finite() && lr >= 0.0)
        {
            return Err(format!(
                "train.lr_output must be a finite number ≥ 0, got {lr}"
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(format!(
                "train.momentum must lie in [0, 1), got {}",
                self.momentum
            ));
        }
        if let Some(b) = self.batch_size
            && !(1..=n).contains(&b)
        {
            return Err(format!("train.batch_size must lie in 1..={n}, got {b}"));
        }
        if self.exact_chunk == 0 {
            return Err("train.exact_chunk must be ≥ 1, got 0".into());
        }
        if self.masks_per_step == 0 {
            return Err("train.masks_per_step must be ≥ 1, got 0".into());
        }
        if self.log_every == 0 {
            return Err("train.log_every must be ≥ 1, got 0".into());
        }
        Ok(())
    }

    fn optimizer(&self) -> ModuleOptimizer {
        match self.optimizer {
            OptimizerKind::Gd if self.momentum > 0.0 => SgdConfig::new()
                .with_momentum(Some(
                    burn::optim::momentum::MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0),
                ))
                .init(),
            OptimizerKind::Gd => SgdConfig::new().init(),
            OptimizerKind::Adam => AdamConfig::new().init(),
        }
    }
}

/// Losses of every replica at one logged step (before that step's update).
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// Step index k: the weights W_k after k updates.
    pub step: usize,
    /// Clean training loss ½ Σ (f(W_k, x_i) − y_i)² per replica.
    pub clean_loss: Vec<f64>,
    /// The objective's value at W_k, per replica: for the masked objectives, the loss on the
    /// step's own mask(s).
    pub masked_loss: Vec<f64>,
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainError {
    /// The loss of a replica became NaN or infinite.
    Diverged {
        /// Step where it was seen.
        step: usize,
        /// Replica index within the run.
        replica: usize,
        /// The value seen.
        value: f64,
    },
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Diverged {
                step,
                replica,
                value,
            } => write!(
                f,
                "training diverged at step {step}: replica {replica} has loss {value} \
                 (lower train.lr)"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// Trains `replicas` of the two-layer network on `data` and calls `log` at every logged step.
///
/// `device` must be an autodiff device. Returns the trained network.
pub fn train_two_layer(
    model_config: &TwoLayerReluConfig,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&LogRecord),
) -> Result<TwoLayerRelu, TrainError> {
    let device = device.clone().autodiff();
    let mut model = model_config.init(replicas, &device);
    let seeds: Vec<u64> = replicas.iter().map(|r| r.seed).collect();
    let mut noise = MaskNoise::new(&seeds);
    let mut optim = config.optimizer();
    let lr_output = config.lr_output.unwrap_or(config.lr);
    let mut optim_output = config.optimizer();

    let all_rows: Vec<usize> = (0..data.n).collect();
    let (x_all, y_all) = data.all_tensors(&device);
    let mut order_stream = Stream::new(config.shuffle_seed, tag::BATCH);
    let mut order: Vec<usize> = all_rows.clone();
    let mut cursor = order.len();

    for step in 0..=config.steps {
        let logged = step % config.log_every == 0 || step == config.steps;
        let last = step == config.steps;
        if !logged && last {
            break;
        }
        // The batch of this step.
        let (rows, x, y) = match config.batch_size {
            None => (all_rows.clone(), x_all.clone(), y_all.clone()),
            Some(b) => {
                if cursor + b > order.len() {
                    order_stream.shuffle(&mut order);
                    cursor = 0;
                }
                let rows = order[cursor..cursor + b].to_vec();
                cursor += b;
                let (x, y) = data.tensors(&rows, &device);
                (rows, x, y)
            }
        };
        let kappa = kappa_tensor(&model.mask.kappa, &device);
        // The objective as one or more loss terms; their gradients are summed. The exact
        // expected loss comes in sample chunks, each differentiated on its own, so memory
        // stays at one chunk's graph (its cost grows as chunk·m²).
        let mut terms: Vec<Tensor<1>> = Vec::new();
        let mut chunk_grads = None;
        match config.objective {
            Objective::Masked => {
                terms.push(half_sse(model.forward_masked(x, &mut noise, &rows), y))
            }
            Objective::MaskedK => {
                // A product, not `/ k`: Burn 0.22.1's backward of a scalar division rounds the
                // scalar to f32, which would put f32 error into f64 gradients.
                let scale = 1.0 / config.masks_per_step as f64;
                for _ in 0..config.masks_per_step {
                    let masked = model.forward_masked(x.clone(), &mut noise, &rows);
                    terms.push(half_sse(masked, y.clone()) * scale);
                }
            }
            Objective::Proxy => {
                terms.push(ProxyLoss::new(model.w.val(), model.a.val(), x, y, kappa).total())
            }
            Objective::ExpectedExact => {
                let (n, d) = (rows.len(), data.d);
                let mut acc_w = GradientsAccumulator::<TwoLayerRelu>::new();
                let mut acc_a = GradientsAccumulator::<TwoLayerRelu>::new();
                for start in (0..n).step_by(config.exact_chunk) {
                    let end = (start + config.exact_chunk).min(n);
                    let xc = x.clone().slice([0..1, start..end, 0..d]);
                    let yc = y.clone().slice([0..1, start..end]);
                    let (w, a) = (model.w.val(), model.a.val());
                    let exact = ExactLoss::new(w, a, xc, yc, kappa.clone(), end - start).total();
                    terms.push(exact.clone().without_autodiff());
                    if !last {
                        // Differentiate chunk by chunk so only one chunk's graph is alive.
                        let mut g = exact.sum().backward();
                        let (w_id, a_id) = (model.w.id, model.a.id);
                        acc_w.accumulate(
                            &model,
                            GradientsParams::from_params(&mut g, &model, &[w_id]),
                        );
                        acc_a.accumulate(
                            &model,
                            GradientsParams::from_params(&mut g, &model, &[a_id]),
                        );
                    }
                }
                chunk_grads = Some((acc_w.grads(), acc_a.grads()));
            }
            Objective::Clean => terms.push(half_sse(model.forward(x), y)),
        }
        let value = terms
            .iter()
            .map(|t| t.clone().without_autodiff())
            .reduce(|acc, t| acc + t)
            .expect("at least one loss term");
        if logged {
            let inner = model.valid();
            let (x_clean, y_clean) = (
                x_all.clone().without_autodiff(),
                y_all.clone().without_autodiff(),
            );
            let clean = to_f64(half_sse(inner.forward(x_clean), y_clean));
            let objective = to_f64(value);
            for (replica, &v) in clean.iter().chain(&objective).enumerate() {
                if !v.is_finite() {
                    return Err(TrainError::Diverged {
                        step,
                        replica: replica % replicas.len(),
                        value: v,
                    });
                }
            }
            log(&LogRecord {
                step,
                clean_loss: clean,
                masked_loss: objective,
            });
        }
        if last {
            break;
        }
        // Replicas are independent, so the gradient of the sum is each replica's own gradient.
        let (grads_w, grads_a) = match chunk_grads {
            Some(grads) => grads,
            None => {
                let loss = terms.into_iter().reduce(|acc, t| acc + t);
                let mut g = loss.expect("at least one loss term").sum().backward();
                let (w_id, a_id) = (model.w.id, model.a.id);
                (
                    GradientsParams::from_params(&mut g, &model, &[w_id]),
                    GradientsParams::from_params(&mut g, &model, &[a_id]),
                )
            }
        };
        model = optim.step(config.lr, model, grads_w);
        if model_config.train_output {
            model = optim_output.step(lr_output, model, grads_a);
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut c = TrainConfig {
            steps: 10,
            lr: f64::NAN,
            lr_output: None,
            optimizer: OptimizerKind::Gd,
            momentum: 0.0,
            batch_size: None,
            objective: Objective::Masked,
            log_every: 1,
            masks_per_step: 1,
            exact_chunk: 32,
            shuffle_seed: 0,
        };
        assert!(c.validate(5).unwrap_err().contains("train.lr"));
        c.lr = 0.1;
        c.batch_size = Some(6);
        assert!(c.validate(5).unwrap_err().contains("train.batch_size"));
        c.batch_size = Some(5);
        assert!(c.validate(5).is_ok());
    }
}
