//! The reference engine: Burn's autodiff differentiates the objective, Burn's optimizers step.
//! Every objective and optimizer runs here; the fused engines are checked against it.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::{Replica, TwoLayerRelu, TwoLayerReluConfig, half_sse};
use gaussmask_smooth::expected::ExactLoss;
use gaussmask_smooth::tensor::{ProxyLoss, kappa_tensor};

use crate::{Batches, LogRecord, Objective, TrainConfig, TrainError, check_finite, tensor_io};

/// Trains with autodiff; see [`crate::train_two_layer`].
pub(crate) fn train(
    model_config: &TwoLayerReluConfig,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&LogRecord),
) -> Result<TwoLayerRelu, TrainError> {
    let device = device.clone().autodiff();
    let mut model = model_config.init(replicas, &device);
    let mut optim = config.optimizer();
    let lr_output = config.lr_output.unwrap_or(config.lr);
    let mut optim_output = config.optimizer();

    let (x_all, y_all) = data.all_tensors(&device);
    let mut batches = Batches::new(data.n, config.batch_size, config.shuffle_seed);

    for step in 0..=config.steps {
        let logged = config.logged(step);
        let last = step == config.steps;
        // The batch of this step.
        let (rows, x, y) = match batches.next() {
            None => (batches.all().to_vec(), x_all.clone(), y_all.clone()),
            Some(rows) => {
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
            Objective::Masked => terms.push(half_sse(model.forward(x, &rows), y)),
            Objective::MaskedK => {
                // A product, not `/ k`: Burn 0.22.1's backward of a scalar division rounds the
                // scalar to f32, which would put f32 error into f64 gradients.
                let scale = 1.0 / config.masks_per_step as f64;
                for _ in 0..config.masks_per_step {
                    let masked = model.forward(x.clone(), &rows);
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
            Objective::Clean => terms.push(half_sse(model.forward_unmasked(x), y)),
        }
        if logged {
            let value = terms
                .iter()
                .map(|t| t.clone().without_autodiff())
                .reduce(|acc, t| acc + t)
                .expect("at least one loss term");
            let inner = model.valid();
            let (x_clean, y_clean) = (
                x_all.clone().without_autodiff(),
                y_all.clone().without_autodiff(),
            );
            let record = LogRecord {
                step,
                clean_loss: tensor_io::to_f64(half_sse(inner.forward_unmasked(x_clean), y_clean)),
                masked_loss: tensor_io::to_f64(value),
                weights: config
                    .wants_weights(step)
                    .then(|| tensor_io::to_f64(inner.w.val())),
            };
            check_finite(&record)?;
            log(&record);
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
