//! The ML-Leaks membership attack (adversary 1) on image classifiers: four disjoint splits
//! (target-train, target-test, shadow-train, shadow-test), a target and a shadow trained alike
//! (mask included), and an attack model fitted on the shadow's posteriors and scored on the
//! target's. Shared by the membership-inference and dp-baseline experiments.

use std::path::PathBuf;

use burn::tensor::Device;
use gaussmask_data::images::{ImageDataset, Normalizer, disjoint_splits};
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::{HarnessError, RunContext};
use gaussmask_nn::image::{ImageModelConfig, MaskedNet};
use gaussmask_privacy::pld::DEFAULT_GRID;
use gaussmask_privacy::{
    AttackMetrics, MembershipFeatures, attack, dp_sgd_epsilon, pld_epsilon, top_sorted,
};
use gaussmask_train::classify::{ClassifierSpec, ClassifyConfig, DpSgd, accuracy, posteriors};
use serde::{Deserialize, Serialize};

use crate::{Images, load, model_label, train_checkpointed};

/// Where the four splits come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitsConfig {
    /// Dataset; its training and test images are pooled before splitting.
    pub dataset: ImageDataset,
    /// Folder of the dataset's files; by default its install locations are searched.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Images in each of the four splits.
    pub split_size: usize,
    /// Floor of the per-pixel std of the normalization (fitted on target-train), grey levels.
    #[serde(default = "one")]
    pub std_floor: f64,
    /// Seed of the splits.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

/// Checks a list of training lengths, sorts it, and sets `train.epochs` to the longest (a
/// `train.epochs` given in the config must be that); then checks `train`.
pub fn resolve_epochs(epochs: &mut Vec<usize>, train: &mut ClassifyConfig) -> Result<(), String> {
    require(
        !epochs.is_empty() && !epochs.contains(&0),
        "epochs",
        "a non-empty list of counts ≥ 1",
        format!("{epochs:?}"),
    )?;
    let longest = *epochs.iter().max().expect("non-empty");
    if train.epochs != 0 && train.epochs != longest {
        return Err(format!(
            "train.epochs = {} but the longest of epochs is {longest}: leave train.epochs out",
            train.epochs
        ));
    }
    train.epochs = longest;
    epochs.sort_unstable();
    epochs.dedup();
    Ok(train.validate("train")?)
}

/// Checks the DP-SGD cells of an experiment that sweeps the noise multiplier σ: the σ list
/// (`non_empty` when the experiment needs one), the clipping norm, δ, no `train.dp` of the
/// config's own (the cells set it), and a model DP-SGD can train (no batch norm).
pub fn check_dp_cells(
    noise_multipliers: &[f64],
    non_empty: bool,
    clip: f64,
    delta: f64,
    train: &ClassifyConfig,
    model: &ImageModelConfig,
) -> Result<(), String> {
    require_distinct("noise_multipliers", noise_multipliers)?;
    require(
        (!non_empty || !noise_multipliers.is_empty())
            && noise_multipliers.iter().all(|s| s.is_finite() && *s > 0.0),
        "noise_multipliers",
        if non_empty {
            "a non-empty list of numbers > 0"
        } else {
            "numbers > 0"
        },
        format!("{noise_multipliers:?}"),
    )?;
    require(clip.is_finite() && clip > 0.0, "clip", "a number > 0", clip)?;
    require(delta > 0.0 && delta < 1.0, "delta", "in (0, 1)", delta)?;
    require(
        train.dp.is_none(),
        "train.dp",
        "absent (set clip and noise_multipliers)",
        "present",
    )?;
    if noise_multipliers.is_empty() {
        return Ok(());
    }
    let mut dp = train.clone();
    dp.dp = Some(DpSgd {
        clip,
        noise_multiplier: 1.0,
    });
    Ok(dp.check_model("train", model)?)
}

/// ε at `delta` of `epochs` epochs of DP-SGD at noise multiplier `sigma` as `train` runs it on
/// `n` rows (its Poisson sampling rate and steps): the PLD accountant's, and the Rényi bound.
pub fn dp_epsilon(
    train: &ClassifyConfig,
    n: usize,
    sigma: f64,
    epochs: usize,
    delta: f64,
) -> (f64, f64) {
    let q = train.fit_config(n, 0).sampling_rate(n);
    let steps = (train.steps_per_epoch(n) * epochs) as u64;
    (
        pld_epsilon(q, sigma, steps, delta, DEFAULT_GRID),
        dp_sgd_epsilon(q, sigma, steps, delta).0,
    )
}

/// The four normalized splits.
pub struct Splits {
    /// Target's training set (members).
    pub target_train: Images,
    /// Target's non-members; also its test set.
    pub target_test: Images,
    /// Shadow's training set.
    pub shadow_train: Images,
    /// Shadow's non-members.
    pub shadow_test: Images,
}

/// Loads the dataset, pools its training and test images, and cuts four disjoint seeded
/// splits of `split_size`, normalized with the statistics of target-train.
pub fn splits(data: &SplitsConfig) -> Result<Splits, HarnessError> {
    let (train, test) = load(data.dataset, data.path.as_deref())?;
    let all = train.concat(&test);
    let parts = disjoint_splits(all.n, &[data.split_size; 4], data.seed)
        .map_err(|e| HarnessError::input(format!("data.split_size: {e}")))?;
    let sets: Vec<_> = parts.iter().map(|rows| all.subset(rows)).collect();
    let norm = Normalizer::fit(&sets[0], data.std_floor);
    let mut it = sets.iter().map(|s| Images::from_set(s, &norm));
    Ok(Splits {
        target_train: it.next().expect("4 splits"),
        target_test: it.next().expect("4 splits"),
        shadow_train: it.next().expect("4 splits"),
        shadow_test: it.next().expect("4 splits"),
    })
}

/// A model's attack features and accuracies after some epochs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochEval {
    /// Training epochs done.
    pub epochs: usize,
    /// Top-3 posteriors of its members and non-members.
    pub features: MembershipFeatures,
    /// Accuracy on its training split.
    pub train_accuracy: f64,
    /// Accuracy on its held-out split (mask off).
    pub test_accuracy: f64,
}

/// Evaluations, one per epoch count.
pub type Evals = Vec<EpochEval>;

fn evaluate(
    epochs: usize,
    net: &MaskedNet,
    members: &Images,
    non_members: &Images,
    device: &Device,
) -> EpochEval {
    let p_in = posteriors(net, members.view(), 500, device);
    let p_out = posteriors(net, non_members.view(), 500, device);
    EpochEval {
        epochs,
        features: MembershipFeatures {
            members: top_sorted(&p_in, members.classes),
            non_members: top_sorted(&p_out, non_members.classes),
        },
        train_accuracy: accuracy(&p_in, &members.labels, members.classes),
        test_accuracy: accuracy(&p_out, &non_members.labels, non_members.classes),
    }
}

/// Trains one model (target or shadow) with checkpoints and evaluates it at each of `epochs`.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate(
    ctx: &RunContext,
    key: &str,
    spec: ClassifierSpec<'_>,
    members: &Images,
    non_members: &Images,
    epochs: &[usize],
    tick: impl FnMut(),
) -> Result<Evals, HarnessError> {
    let device = ctx.device.clone().autodiff();
    ctx.checkpoints.unit(key, || {
        let (_, evals) = train_checkpointed(
            ctx,
            key,
            spec,
            members.view(),
            &device,
            tick,
            |epoch, net, evals: &mut Evals| {
                if epochs.contains(&epoch) {
                    evals.push(evaluate(epoch, net, members, non_members, &ctx.device));
                }
                Ok(())
            },
        )?;
        Ok(evals)
    })
}

/// One (model, κ, epochs) result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Model label.
    pub model: String,
    /// κ of target and shadow.
    pub kappa: f64,
    /// Training epochs.
    pub epochs: usize,
    /// Attack on the target.
    pub attack: AttackMetrics,
    /// Target accuracy on its training split.
    pub target_train_accuracy: f64,
    /// Target accuracy on target-test (the utility).
    pub target_test_accuracy: f64,
}

/// Trains target and shadow of `model` at `kappa` under `train` and attacks the target at each
/// of `epochs`; `tag` keeps the checkpoints of different settings apart.
#[allow(clippy::too_many_arguments)]
pub fn attack_setting(
    ctx: &RunContext,
    tag: &str,
    model: &ImageModelConfig,
    train: &ClassifyConfig,
    kappa: f64,
    seed: u64,
    splits: &Splits,
    epochs: &[usize],
    mut tick: impl FnMut(),
) -> Result<Vec<Row>, HarnessError> {
    let label = model_label(model);
    let spec = |seed| ClassifierSpec {
        model,
        train,
        kappa,
        seed,
    };
    let key = format!("{label}-{tag}");
    let target = train_and_evaluate(
        ctx,
        &format!("{key}-target"),
        spec(seed),
        &splits.target_train,
        &splits.target_test,
        epochs,
        &mut tick,
    )?;
    let shadow = train_and_evaluate(
        ctx,
        &format!("{key}-shadow"),
        spec(seed + 1000),
        &splits.shadow_train,
        &splits.shadow_test,
        epochs,
        &mut tick,
    )?;
    epochs
        .iter()
        .map(|e| {
            let at = |evals: &Evals| {
                evals
                    .iter()
                    .find(|v| v.epochs == *e)
                    .cloned()
                    .ok_or_else(|| {
                        HarnessError::run(format!("{key}: no evaluation after {e} epochs"))
                    })
            };
            let (t, s) = (at(&target)?, at(&shadow)?);
            let metrics = attack(&s.features, &t.features)
                .map_err(|err| HarnessError::run(format!("{key} at {e} epochs: {err}")))?;
            Ok(Row {
                model: label.clone(),
                kappa,
                epochs: *e,
                attack: metrics,
                target_train_accuracy: t.train_accuracy,
                target_test_accuracy: t.test_accuracy,
            })
        })
        .collect()
}
