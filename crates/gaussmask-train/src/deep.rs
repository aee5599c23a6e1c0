//! Masked GD on ReLU MLPs of any depth ([`gaussmask_nn::DeepRelu`]), with Burn's autodiff: the
//! general path for models beyond two layers.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use gaussmask_data::Dataset;
use gaussmask_nn::{DeepRelu, Replica, TwoLayerReluConfig, deep_init, half_sse};

use crate::{Batches, LogRecord, Objective, TrainConfig, TrainError, check_finite, tensor_io};

/// Checks that `config` is one [`train_deep`] runs: objective masked or clean, and the output
/// signs frozen. The error names the field.
pub fn check_deep(model: &TwoLayerReluConfig, config: &TrainConfig) -> Result<(), String> {
    if !matches!(config.objective, Objective::Masked | Objective::Clean) {
        return Err(format!(
            "train.objective = {:?} is not available for deep networks (masked or clean)",
            config.objective
        ));
    }
    if model.train_output {
        return Err("model.train_output must be false for deep networks".into());
    }
    Ok(())
}

/// Trains R replicas of a depth-`depth` MLP with `config`'s optimizer, batches and objective,
/// and the same masks (per replica seed) as [`crate::train_two_layer`]; `log` gets each logged
/// step's losses (no weights).
///
/// # Errors
/// [`TrainError::Diverged`] when a loss becomes NaN or infinite.
pub fn train_deep(
    model_config: &TwoLayerReluConfig,
    depth: usize,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&LogRecord),
) -> Result<DeepRelu, TrainError> {
    let device = device.clone().autodiff();
    let mut model = deep_init(model_config, depth, replicas, &device);
    let mut optim = config.optimizer();
    let (x_all, y_all) = data.all_tensors(&device);
    let mut batches = Batches::new(data.n, config);
    for step in 0..=config.steps {
        let (rows, x, y) = match batches.next() {
            None => (batches.all().to_vec(), x_all.clone(), y_all.clone()),
            Some(rows) => {
                let (x, y) = data.tensors(&rows, &device);
                (rows, x, y)
            }
        };
        let loss = match config.objective {
            Objective::Clean => half_sse(model.forward(x), y),
            _ => half_sse(model.forward_masked(x, &rows), y),
        };
        if config.logged(step) {
            let clean = half_sse(
                model.valid().forward(x_all.clone().without_autodiff()),
                y_all.clone().without_autodiff(),
            );
            let record = LogRecord {
                step,
                clean_loss: tensor_io::to_f64(clean),
                masked_loss: tensor_io::to_f64(loss.clone().without_autodiff()),
                weights: None,
            };
            check_finite(&record)?;
            log(&record);
        }
        if step == config.steps {
            break;
        }
        // Replicas are independent, so the gradient of the sum is each replica's own gradient.
        let grads = GradientsParams::from_grads(loss.sum().backward(), &model);
        model = optim.step(config.lr, model, grads);
    }
    Ok(model)
}
