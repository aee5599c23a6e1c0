//! The fused engine: the masked GD step with a hand-derived gradient as plain Burn tensor
//! ops on the run's device, no autodiff graph. The GPU path; it runs on every backend.
//!
//! With X̃ = X ⊙ C, Z = X̃ Wᵀ, f = relu(Z) a / √m and r = f − y (per replica):
//!   ∂L/∂W = Gᵀ X̃ with G = (r aᵀ / √m) ⊙ 1[Z > 0],   ∂L/∂a = relu(Z)ᵀ r / √m.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::{Replica, TwoLayerRelu, TwoLayerReluConfig, half_sse, output};

use crate::{Batches, LogRecord, Objective, TrainConfig, TrainError, check_finite, tensor_io};

/// Trains with the fused step; see [`crate::train_two_layer`].
pub(crate) fn train(
    model_config: &TwoLayerReluConfig,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&LogRecord),
) -> Result<TwoLayerRelu, TrainError> {
    let autodiff = device.clone().autodiff();
    // Initialized like every engine, then trained on the plain device.
    let initial = model_config.init(replicas, &autodiff);
    let mask = initial.mask.clone(); // in training mode; `valid()` would turn it off
    let model = initial.valid();
    let [r_count, m, d] = model.dims();
    let scale = 1.0 / (m as f64).sqrt();
    let mut w = model.w.val();
    let mut a = model.a.val();
    let (mut velocity_w, mut velocity_a) = (w.zeros_like(), a.zeros_like());
    let (x_all, y_all) = data.all_tensors(device);
    let mut batches = Batches::new(data.n, config.batch_size, config.shuffle_seed);
    let lr_output = config.lr_output.unwrap_or(config.lr);

    for step in 0..=config.steps {
        let logged = config.logged(step);
        let last = step == config.steps;
        let (rows, x, y) = match batches.next() {
            None => (batches.all().to_vec(), x_all.clone(), y_all.clone()),
            Some(rows) => {
                let (x, y) = data.tensors(&rows, device);
                (rows, x, y)
            }
        };
        let n = rows.len();
        let x_masked = match config.objective {
            Objective::Masked => mask.forward_indexed(x, &rows),
            _ => x,
        }
        .expand([r_count, n, d]);
        let z = x_masked.clone().matmul(w.clone().swap_dims(1, 2)); // [R, n, m]
        let h = relu(z.clone());
        let f = h
            .clone()
            .matmul(a.clone().unsqueeze_dim::<3>(2))
            .reshape([r_count, n])
            * scale;
        let residual = f - y; // [R, n]
        if logged {
            let masked = (residual.clone().square().sum_dim(1) * 0.5).reshape([r_count]);
            let record = LogRecord {
                step,
                clean_loss: tensor_io::to_f64(half_sse(
                    output(w.clone(), a.clone(), x_all.clone()),
                    y_all.clone(),
                )),
                masked_loss: tensor_io::to_f64(masked),
                weights: config
                    .wants_weights(step)
                    .then(|| tensor_io::to_f64(w.clone())),
            };
            check_finite(&record)?;
            log(&record);
        }
        if last {
            break;
        }
        let r_scaled = residual * scale; // r / √m
        let g = (r_scaled.clone().unsqueeze_dim::<3>(2) * a.clone().unsqueeze_dim::<3>(1))
            .mask_fill(z.lower_equal_elem(0.0), 0.0); // [R, n, m]
        let grad_w = g.swap_dims(1, 2).matmul(x_masked); // [R, m, d]
        (w, velocity_w) = descend(w, velocity_w, grad_w, config.lr, config.momentum);
        if model_config.train_output {
            let grad_a = h
                .swap_dims(1, 2)
                .matmul(r_scaled.unsqueeze_dim::<3>(2))
                .reshape([r_count, m]);
            (a, velocity_a) = descend(a, velocity_a, grad_a, lr_output, config.momentum);
        }
    }
    Ok(TwoLayerRelu::from_weights(
        tensor_io::to_f64(w),
        tensor_io::to_f64(a),
        [r_count, m, d],
        model_config.train_output,
        mask,
        &autodiff,
    ))
}

/// v ← μ v + g, p ← p − η v (Burn's SGD momentum with no dampening; plain GD at μ = 0).
fn descend<const D: usize>(
    p: Tensor<D>,
    v: Tensor<D>,
    g: Tensor<D>,
    lr: f64,
    momentum: f64,
) -> (Tensor<D>, Tensor<D>) {
    if momentum > 0.0 {
        let v = v * momentum + g;
        (p - v.clone() * lr, v)
    } else {
        (p - g * lr, v)
    }
}
