//! `lira`: membership privacy of masked training measured as the privacy field measures it.
//! N models per cell (a mask level κ, or DP-SGD at a noise multiplier σ), each trained on a
//! seeded random half of a pool of images, so every image is a member of about half of them.
//! Each model in turn is the target and the others its shadows; the likelihood-ratio attack
//! (LiRA, Carlini et al. 2022; `gaussmask_privacy::lira`) scores every (target, image) pair,
//! online and offline, from the logit-scaled confidence of the true class on the clean image
//! and on K masked copies of it at the training κ (an attacker who knows the mask). Reported:
//! AUC, TPR at FPR 10⁻³ and 10⁻² with their Wilson intervals, a log-log ROC per cell, and the
//! utility–privacy frontier (test accuracy against TPR at 0.1% FPR). ML-Leaks adversary 1
//! attacks the same targets (each through the next model of its cell as the shadow), so the
//! weaker attack's reading sits beside LiRA's.

use burn::module::Module;
use gaussmask_data::images::{ImageDataset, Normalizer, disjoint_splits};
use gaussmask_harness::config::require;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, InputError, RunContext, Study, Unit};
use gaussmask_images::lira::{log_p, masked_phis, phis};
use gaussmask_images::membership::{check_dp_cells, dp_epsilon};
use gaussmask_images::{
    Images, load, test_accuracy, train_checkpointed, train_replicas_checkpointed,
};
use gaussmask_nn::image::{Architecture, ImageModelConfig, MaskedNet};
use gaussmask_nn::{KappaGrid, Replica};
use gaussmask_privacy::lira::{Rate, Reading, ReadingColumns, member_halves, read_queries};
use gaussmask_privacy::{MembershipFeatures, TOP_K, attack_scores, top_sorted};
use gaussmask_train::classify::{ClassifierReplicas, ClassifierSpec, ClassifyConfig, DpSgd};
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/lira.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiraConfig {
    /// Seeds the models (model m: `seed + m`), their halves and the masked queries.
    #[serde(default)]
    pub seed: u64,
    /// Models per cell: each the target once, the others its shadows.
    pub models: usize,
    /// Masked copies of each image the attacker queries at the training κ, besides the clean
    /// image.
    pub queries: usize,
    /// Mask levels, one cell each (DP-SGD off).
    pub kappas: KappaGrid,
    /// DP-SGD noise multipliers σ, one cell each (no mask).
    #[serde(default)]
    pub noise_multipliers: Vec<f64>,
    /// DP-SGD's clipping norm.
    #[serde(default = "one")]
    pub clip: f64,
    /// δ of the printed ε.
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// The pool and the test set.
    pub data: PoolConfig,
    /// The models' architecture (the mask family comes from `model.mask`).
    pub model: ImageModelConfig,
    /// How every model is trained.
    pub train: ClassifyConfig,
}

/// Where the images come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Dataset; its training and test images are pooled before splitting.
    pub dataset: ImageDataset,
    /// Folder of the dataset's files; by default its install locations are searched.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Images in the pool (each model trains on half of them).
    pub pool: usize,
    /// Held-out images for the test accuracy, disjoint from the pool.
    pub test_size: usize,
    /// Floor of the per-pixel std of the normalization (fitted on the pool), grey levels.
    #[serde(default = "one")]
    pub std_floor: f64,
    /// Seed of the pool and test split.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}
fn default_delta() -> f64 {
    1e-5
}

impl LiraConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        require(
            self.models >= 4,
            "models",
            "≥ 4 (a target and shadows on both sides)",
            self.models,
        )?;
        require(self.data.pool >= 4, "data.pool", "≥ 4", self.data.pool)?;
        require(
            self.data.test_size >= 1,
            "data.test_size",
            "≥ 1",
            self.data.test_size,
        )?;
        require(
            self.data.std_floor.is_finite() && self.data.std_floor > 0.0,
            "data.std_floor",
            "a number > 0",
            self.data.std_floor,
        )?;
        gaussmask_images::check_dataset(self.data.dataset, self.data.path.as_deref())?;
        self.model.validate([1, 28, 28])?;
        require(
            self.train.epochs >= 1,
            "train.epochs",
            "≥ 1",
            self.train.epochs,
        )?;
        self.train.validate("train")?;
        check_dp_cells(
            &self.noise_multipliers,
            false,
            self.clip,
            self.delta,
            &self.train,
            &self.model,
        )
    }

    /// Which pool images model `m` trains on: a seeded half.
    pub fn members(&self, m: usize) -> Vec<bool> {
        member_halves(self.data.pool, self.seed, m)
    }

    /// The pool rows model `m` trains on, in pool order.
    fn member_rows(&self, m: usize) -> Vec<usize> {
        let member = self.members(m);
        (0..self.data.pool).filter(|&i| member[i]).collect()
    }

    /// Whether `cell`'s models train as one batched model ([`ClassifierReplicas`]): a mask
    /// cell of MLPs. DP-SGD (Poisson batches of their own size) and CNNs train one at a time.
    fn batched(&self, cell: Cell) -> bool {
        matches!(cell, Cell::Mask(_)) && self.model.architecture == Architecture::Mlp
    }
}

/// One cell of the study: what protects the models.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// The input mask at κ.
    Mask(f64),
    /// DP-SGD at noise multiplier σ.
    DpSgd(f64),
}

impl Cell {
    /// "mask" or "dp-sgd".
    pub fn defence(&self) -> &'static str {
        match self {
            Cell::Mask(_) => "mask",
            Cell::DpSgd(_) => "dp-sgd",
        }
    }

    /// κ or σ.
    pub fn strength(&self) -> f64 {
        match self {
            Cell::Mask(k) | Cell::DpSgd(k) => *k,
        }
    }

    fn key(&self) -> String {
        match self {
            Cell::Mask(k) => format!("k{}", gaussmask_nn::kappa_label(*k)),
            Cell::DpSgd(s) => format!("dp-s{s}"),
        }
    }
}

/// What one trained model gives the attack.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelEval {
    /// φ of every pool image, clean query.
    pub phi_clean: Vec<f64>,
    /// φ of every pool image, mean over the masked queries (the clean φ without a mask).
    pub phi_masked: Vec<f64>,
    /// ML-Leaks's features of every pool image: the top sorted posteriors, clean query.
    pub top_posteriors: Vec<[f64; TOP_K]>,
    /// Accuracy on the test images (mask off).
    pub test_accuracy: f64,
}

/// The pool and the test images, normalized with the pool's statistics.
fn images(data: &PoolConfig) -> Result<(Images, Images), HarnessError> {
    let (train, test) = load(data.dataset, data.path.as_deref())?;
    let all = train.concat(&test);
    let parts = disjoint_splits(all.n, &[data.pool, data.test_size], data.seed)
        .map_err(|e| HarnessError::input(format!("data.pool: {e}")))?;
    let pool = all.subset(&parts[0]);
    let norm = Normalizer::fit(&pool, data.std_floor);
    Ok((
        Images::from_set(&pool, &norm),
        Images::from_set(&all.subset(&parts[1]), &norm),
    ))
}

/// LiRA with shadow models against masked training and DP-SGD.
pub struct Lira;

impl Study for Lira {
    type Config = LiraConfig;
    /// (cell, its models the unit trains): all of a cell's models as one batched training
    /// where [`LiraConfig::batched`], else one.
    type Unit = (Cell, Vec<usize>);
    type Output = Vec<ModelEval>;

    fn id(&self) -> &'static str {
        "lira"
    }

    fn about(&self) -> &'static str {
        "LiRA with shadow models: TPR at low FPR, ROC and frontier for the mask and DP-SGD"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/lira.toml")
    }

    fn validate(&self, config: &mut LiraConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &LiraConfig) -> Vec<Unit<(Cell, Vec<usize>)>> {
        let cells = c
            .kappas
            .iter()
            .map(|&k| Cell::Mask(k))
            .chain(c.noise_multipliers.iter().map(|&s| Cell::DpSgd(s)));
        cells
            .flat_map(|cell| match c.batched(cell) {
                true => vec![Unit::new(cell.key(), (cell, (0..c.models).collect()))],
                false => (0..c.models)
                    .map(|m| Unit::new(format!("{}-m{m}", cell.key()), (cell, vec![m])))
                    .collect(),
            })
            .collect()
    }

    fn run_unit(
        &self,
        c: &LiraConfig,
        unit: &Unit<(Cell, Vec<usize>)>,
        ctx: &RunContext,
    ) -> Result<Vec<ModelEval>, HarnessError> {
        let (cell, models) = (unit.spec.0, &unit.spec.1);
        let (pool, test) = images(&c.data)?;
        let mut train = c.train.clone();
        let kappa = match cell {
            Cell::Mask(k) => k,
            Cell::DpSgd(sigma) => {
                train.dp = Some(DpSgd {
                    clip: c.clip,
                    noise_multiplier: sigma,
                });
                0.0
            }
        };
        let spec = |m: usize| ClassifierSpec {
            model: &c.model,
            train: &train,
            kappa,
            seed: c.seed + m as u64,
        };
        let steps = train.steps_per_epoch(c.data.pool / 2) * train.epochs;
        let bar = ctx.progress(steps as u64, &unit.key);
        let device = ctx.device.clone().autodiff();
        let nets = if c.batched(cell) {
            let replicas = ClassifierReplicas {
                model: &c.model,
                train: &train,
                replicas: models
                    .iter()
                    .map(|&m| Replica {
                        kappa,
                        seed: spec(m).seed,
                    })
                    .collect(),
                rows: models.iter().map(|&m| c.member_rows(m)).collect(),
            };
            let tick = || bar.inc(1);
            train_replicas_checkpointed(ctx, &unit.key, &replicas, pool.view(), &device, tick)?
        } else {
            // One model per unit (`units`), its training checkpointed under the unit's key.
            let m = models[0];
            let members = pool.subset(&c.member_rows(m));
            let (net, ()) = train_checkpointed(
                ctx,
                &unit.key,
                spec(m),
                members.view(),
                &device,
                || bar.inc(1),
                |_, _, _: &mut ()| Ok(()),
            )?;
            vec![net]
        };
        bar.finish_and_clear();
        Ok(nets
            .into_iter()
            .zip(models)
            .map(|(net, &m)| evaluate(c, &net.valid(), kappa, m, &pool, &test, ctx))
            .collect())
    }

    fn reduce(
        &self,
        c: &LiraConfig,
        outputs: Vec<(Unit<(Cell, Vec<usize>)>, Vec<ModelEval>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let mut rows = Vec::new();
        let mut curves = Vec::new();
        let mut cells: Vec<Cell> = Vec::new();
        for (u, _) in &outputs {
            if !cells.contains(&u.spec.0) {
                cells.push(u.spec.0);
            }
        }
        for cell in cells {
            let evals: Vec<(usize, &ModelEval)> = outputs
                .iter()
                .filter(|(u, _)| u.spec.0 == cell)
                .flat_map(|(u, e)| u.spec.1.iter().copied().zip(e))
                .collect();
            let member: Vec<Vec<bool>> = evals.iter().map(|(m, _)| c.members(*m)).collect();
            let accuracy =
                evals.iter().map(|(_, e)| e.test_accuracy).sum::<f64>() / evals.len() as f64;
            let epsilon = match cell {
                Cell::Mask(_) => None,
                Cell::DpSgd(sigma) => {
                    Some(dp_epsilon(&c.train, c.data.pool / 2, sigma, c.train.epochs, c.delta).0)
                }
            };
            let (clean, masked): (Vec<Vec<f64>>, Vec<Vec<f64>>) = evals
                .iter()
                .map(|(_, e)| (e.phi_clean.clone(), e.phi_masked.clone()))
                .unzip();
            let (readings, roc) = read_queries(&clean, &masked, &member);
            curves.push((cell, roc));
            // ML-Leaks adversary 1 on the same targets, clean queries: target t's attack model
            // is fitted on the next model of the cell as its shadow.
            let (scores, truth) = ml_leaks(&evals, &member)?;
            let ml_leaks = Reading::of("clean", "ml-leaks", &scores, &truth);
            for reading in readings.into_iter().chain([ml_leaks]) {
                eprintln!(
                    "{} {} {} {}: AUC {:.3}, TPR {:.4} at 0.1% FPR, {:.4} at 1%; test accuracy \
                     {accuracy:.3}",
                    cell.defence(),
                    cell.strength(),
                    reading.query,
                    reading.variant,
                    reading.auc,
                    reading.tpr_at_0_1pct.value,
                    reading.tpr_at_1pct.value
                );
                rows.push(LiraRow {
                    defence: cell.defence(),
                    strength: cell.strength(),
                    reading,
                    test_accuracy: accuracy,
                    epsilon,
                });
            }
        }
        let matched = matches(&rows);
        for m in &matched {
            eprintln!(
                "matched: DP-SGD σ = {} (accuracy {:.3}) TPR {:.4} at 0.1% FPR; mask κ = {} \
                 (accuracy {:.3}, {} queries) TPR {:.4}",
                m.sigma,
                m.dp_accuracy,
                m.dp_tpr_at_0_1pct.value,
                m.kappa,
                m.mask_accuracy,
                m.mask_query,
                m.mask_tpr_at_0_1pct.value
            );
        }
        write_outputs(&rows, &curves, &matched, ctx)
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// What the trained model `m` of a cell at mask level `kappa` (its evaluation model `net`)
/// gives the attack: φ of every pool image, clean and masked, ML-Leaks's features and the test
/// accuracy.
fn evaluate(
    c: &LiraConfig,
    net: &MaskedNet,
    kappa: f64,
    m: usize,
    pool: &Images,
    test: &Images,
    ctx: &RunContext,
) -> ModelEval {
    let clean = log_p(net, pool, &ctx.device);
    let phi_clean = phis(&clean, pool);
    let posteriors: Vec<f32> = clean.iter().map(|l| l.exp() as f32).collect();
    let phi_masked = masked_phis(
        net,
        pool,
        &c.model.mask,
        kappa,
        c.queries,
        c.seed,
        m,
        &phi_clean,
        &ctx.device,
    );
    ModelEval {
        phi_clean,
        phi_masked,
        top_posteriors: top_sorted(&posteriors, pool.classes),
        test_accuracy: test_accuracy(net, test, &ctx.device),
    }
}

/// ML-Leaks adversary 1 against every model of a cell (`evals`, with their memberships),
/// each attacked through the next model as its shadow; the scores of every (target, image)
/// pair, pooled as LiRA's are, with the truth.
fn ml_leaks(
    evals: &[(usize, &ModelEval)],
    member: &[Vec<bool>],
) -> Result<(Vec<f64>, Vec<bool>), HarnessError> {
    let features = |j: usize| {
        let (mut members, mut non_members) = (Vec::new(), Vec::new());
        for (f, &m) in evals[j].1.top_posteriors.iter().zip(&member[j]) {
            if m {
                members.push(*f);
            } else {
                non_members.push(*f);
            }
        }
        MembershipFeatures {
            members,
            non_members,
        }
    };
    let (mut scores, mut truth) = (Vec::new(), Vec::new());
    for t in 0..evals.len() {
        let (s, l) = attack_scores(&features((t + 1) % evals.len()), &features(t))
            .map_err(|e| HarnessError::run(format!("ML-Leaks on model {}: {e}", evals[t].0)))?;
        scores.extend(s);
        truth.extend(l);
    }
    Ok((scores, truth))
}

/// One line of `lira.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct LiraRow {
    /// "mask" or "dp-sgd".
    pub defence: &'static str,
    /// κ or σ.
    pub strength: f64,
    /// The attack's reading: LiRA online or offline at clean or masked queries, or ML-Leaks
    /// (`variant` "ml-leaks", clean queries only).
    #[serde(flatten)]
    pub reading: Reading,
    /// Mean test accuracy of the cell's models.
    pub test_accuracy: f64,
    /// DP-SGD's ε at δ from the PLD accountant (none for the mask).
    pub epsilon: Option<f64>,
}

/// A DP-SGD cell beside the mask cell of closest test accuracy, both read by online LiRA at
/// the attacker's stronger query (DP-SGD: clean, its only one; the mask: clean or masked,
/// whichever finds more members at 0.1% FPR).
#[derive(Clone, Debug, Serialize)]
pub struct Matched {
    /// DP-SGD's noise multiplier.
    pub sigma: f64,
    /// Its ε at δ.
    pub epsilon: Option<f64>,
    /// Mean test accuracy of the DP-SGD models.
    pub dp_accuracy: f64,
    /// LiRA's TPR at 0.1% FPR against them.
    pub dp_tpr_at_0_1pct: Rate,
    /// The mask level of closest accuracy.
    pub kappa: f64,
    /// Mean test accuracy of its models.
    pub mask_accuracy: f64,
    /// The query that attacks it best.
    pub mask_query: &'static str,
    /// LiRA's TPR at 0.1% FPR against them.
    pub mask_tpr_at_0_1pct: Rate,
}

/// Every DP-SGD cell of `rows` beside the mask cell of closest test accuracy.
fn matches(rows: &[LiraRow]) -> Vec<Matched> {
    let online = |defence: &'static str| {
        rows.iter()
            .filter(move |r| r.defence == defence && r.reading.variant == "online")
    };
    online("dp-sgd")
        .filter(|dp| dp.reading.query == "clean")
        .filter_map(|dp| {
            let gap = |r: &LiraRow| (r.test_accuracy - dp.test_accuracy).abs();
            let nearest = online("mask").min_by(|a, b| gap(a).total_cmp(&gap(b)))?;
            let mask = online("mask")
                .filter(|r| r.strength == nearest.strength)
                .max_by(|a, b| {
                    a.reading
                        .tpr_at_0_1pct
                        .value
                        .total_cmp(&b.reading.tpr_at_0_1pct.value)
                })?;
            Some(Matched {
                sigma: dp.strength,
                epsilon: dp.epsilon,
                dp_accuracy: dp.test_accuracy,
                dp_tpr_at_0_1pct: dp.reading.tpr_at_0_1pct,
                kappa: mask.strength,
                mask_accuracy: mask.test_accuracy,
                mask_query: mask.reading.query,
                mask_tpr_at_0_1pct: mask.reading.tpr_at_0_1pct,
            })
        })
        .collect()
}

/// `lira.csv`'s columns before the reading's.
#[derive(Serialize)]
struct CellColumns {
    defence: &'static str,
    strength: f64,
}

/// `lira.csv`'s columns after the reading's.
#[derive(Serialize)]
struct UtilityColumns {
    test_accuracy: f64,
    epsilon: Option<f64>,
}

fn write_outputs(
    rows: &[LiraRow],
    curves: &[(Cell, Vec<(f64, f64)>)],
    matched: &[Matched],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let csv: Vec<_> = rows
        .iter()
        .map(|r| {
            let cell = CellColumns {
                defence: r.defence,
                strength: r.strength,
            };
            let utility = UtilityColumns {
                test_accuracy: r.test_accuracy,
                epsilon: r.epsilon,
            };
            (cell, ReadingColumns::from(&r.reading), utility)
        })
        .collect();
    ctx.write_csv("lira.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "matched": matched }),
    )?;
    let label = |cell: &Cell| match cell {
        Cell::Mask(k) => format!("mask κ = {k}"),
        Cell::DpSgd(s) => format!("DP-SGD σ = {s}"),
    };
    ctx.plot(
        &LinePlot::log_log_roc(
            "LiRA (online, masked queries): ROC",
            curves
                .iter()
                .map(|(c, curve)| (label(c), curve.clone()))
                .collect(),
        ),
        "roc",
    )?;
    // The frontier: test accuracy against TPR at 0.1% FPR (online, masked queries).
    let frontier = |defence: &str| Series {
        label: match defence {
            "mask" => "input mask (κ)".into(),
            _ => "DP-SGD (σ)".into(),
        },
        points: rows
            .iter()
            .filter(|r| {
                r.defence == defence && r.reading.variant == "online" && r.reading.query == "masked"
            })
            .map(|r| (r.reading.tpr_at_0_1pct.value, r.test_accuracy))
            .collect(),
        ..Series::default()
    };
    ctx.plot(
        &LinePlot {
            title: "utility against membership exposure".into(),
            x_label: "LiRA TPR at 0.1% FPR (online, masked queries)".into(),
            y_label: "test accuracy".into(),
            series: vec![frontier("mask"), frontier("dp-sgd")],
            legend_left: true,
            ..LinePlot::default()
        },
        "frontier",
    )
}
