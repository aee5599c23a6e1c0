//! Masked GD on ReLU MLPs of any depth ([`gaussmask_nn::DeepRelu`]) through the generic loop
//! [`crate::fit::fit`], logged like the two-layer engines.

use burn::module::Module;
use burn::tensor::Device;
use gaussmask_data::Dataset;
use gaussmask_nn::{DeepRelu, Replica, TwoLayerReluConfig, deep_init, half_sse};

use crate::fit::{FitConfig, FitOptimizer, fit};
use crate::{
    LogRecord, Objective, OptimizerKind, TrainConfig, TrainError, check_finite, tensor_io,
};

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
    // The clean objective is the masked one with the identity mask (κ = 0 draws nothing).
    let clean: Vec<Replica> = replicas
        .iter()
        .map(|r| Replica { kappa: 0.0, ..*r })
        .collect();
    let masked = config.objective != Objective::Clean;
    let model = deep_init(
        model_config,
        depth,
        if masked { replicas } else { &clean },
        &device,
    );
    let fit_config = FitConfig {
        steps: config.steps,
        batch_size: config.batch_size,
        lr: config.lr,
        optimizer: match config.optimizer {
            OptimizerKind::Gd => FitOptimizer::Gd,
            OptimizerKind::Adam => FitOptimizer::Adam,
        },
        momentum: config.momentum,
        shuffle_seed: config.shuffle_seed,
        log_every: config.log_every,
        ..FitConfig::default()
    };
    let (x_all, y_all) = data.all_tensors(&device);
    let (x_all, y_all) = (x_all.without_autodiff(), y_all.without_autodiff());
    let mut failed = None;
    let model = fit(model, data, &fit_config, &device, |step, model| {
        let clean = half_sse(model.valid().forward(x_all.clone()), y_all.clone());
        let record = LogRecord {
            step: step.step,
            clean_loss: tensor_io::to_f64(clean),
            masked_loss: step.loss.clone(),
            weights: None,
        };
        match check_finite(&record) {
            Ok(()) => log(&record),
            Err(e) => failed = failed.take().or(Some(e)),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(model)
}
