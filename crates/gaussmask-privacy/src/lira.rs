//! The likelihood-ratio attack (LiRA) of Carlini, Chien, Nasr, Song, Terzis & Tramèr,
//! "Membership Inference Attacks From First Principles" (IEEE S&P 2022), and the way the privacy
//! field reports an attack: the true-positive rate at a low false-positive rate, with its
//! binomial interval, beside the AUC, and the ROC curve on log-log axes.
//!
//! N models share a pool of examples; model m trained on the examples with `member[m][i]`.
//! Each model in turn is the target and the other N − 1 its shadows. The statistic of an
//! example on a model is the logit-scaled confidence of its true class, φ = ln(p_y/(1 − p_y))
//! (averaged over the attacker's queries: the clean input and masked copies). For target t and
//! example i the shadows that trained on i give the "in" Gaussian, the others the "out" one:
//! online LiRA scores ln N(φ; μ_in, σ_in²) − ln N(φ; μ_out, σ_out²), offline LiRA
//! (φ − μ_out)/σ_out. The means are per example; the variances are pooled over the examples of
//! each target, as the paper recommends with few shadows.

use gaussmask_core::rng::{Stream, derive_seed, tag};
use serde::{Deserialize, Serialize};

/// Which of `pool` examples model `model` trains on: a seeded half (⌊pool/2⌋ of them), drawn
/// from a stream of (`seed`, `model`), so every example is a member of about half the models.
pub fn member_halves(pool: usize, seed: u64, model: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..pool).collect();
    Stream::new(derive_seed(seed, tag::SPLIT, &[model as u64]), tag::SPLIT).shuffle(&mut order);
    let mut member = vec![false; pool];
    for &i in &order[..pool / 2] {
        member[i] = true;
    }
    member
}

/// φ of a regression output: −ln of its squared error (floored at the smallest normal f64),
/// the regression counterpart of [`logit_confidence`]: larger when the model fits the example
/// better, and on a log scale, where the spread over models is closer to a Gaussian's.
pub fn log_error_confidence(prediction: f64, target: f64) -> f64 {
    let e = prediction - target;
    -(e * e).max(f64::MIN_POSITIVE).ln()
}

/// φ = ln(p_y / (1 − p_y)) of the class `label` from a row of log-probabilities, without
/// cancellation: ln(1 − p_y) is the log-sum-exp of the other classes.
pub fn logit_confidence(log_probs: &[f64], label: usize) -> f64 {
    let others: Vec<f64> = log_probs
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != label)
        .map(|(_, &l)| l)
        .collect();
    let m = others.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rest = m + others.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
    log_probs[label] - rest
}

/// The attack's scores over every (target, example) pair that has shadows on both sides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiraScores {
    /// Online LiRA: the log-likelihood ratio of "in" against "out".
    pub online: Vec<f64>,
    /// Offline LiRA: how far φ lies above the "out" Gaussian, in its standard deviations.
    pub offline: Vec<f64>,
    /// Whether the target trained on the example.
    pub member: Vec<bool>,
}

/// LiRA with each of the N models of `phi` (`[N][examples]`) as the target and the others as
/// its shadows; `member` says which examples each model trained on. Pairs whose example has no
/// "in" or fewer than two "out" shadows are left out.
///
/// # Panics
/// `phi` and `member` differ in shape (the callers build both from one split).
pub fn lira(phi: &[Vec<f64>], member: &[Vec<bool>]) -> LiraScores {
    assert_eq!(phi.len(), member.len(), "one membership row per model");
    let models = phi.len();
    let examples = phi.first().map_or(0, Vec::len);
    let mut out = LiraScores::default();
    for t in 0..models {
        // Per example: (mean in, mean out) over the shadows, and the pooled squared
        // deviations for the two variances.
        let mut means = Vec::with_capacity(examples);
        let (mut ss_in, mut n_in, mut ss_out, mut n_out) = (0.0, 0usize, 0.0, 0usize);
        for i in 0..examples {
            let (ins, outs): (Vec<f64>, Vec<f64>) = {
                let mut ins = Vec::new();
                let mut outs = Vec::new();
                for s in (0..models).filter(|&s| s != t) {
                    if member[s][i] {
                        ins.push(phi[s][i]);
                    } else {
                        outs.push(phi[s][i]);
                    }
                }
                (ins, outs)
            };
            if ins.is_empty() || outs.len() < 2 {
                means.push(None);
                continue;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (mi, mo) = (mean(&ins), mean(&outs));
            ss_in += ins.iter().map(|x| (x - mi).powi(2)).sum::<f64>();
            n_in += ins.len() - 1;
            ss_out += outs.iter().map(|x| (x - mo).powi(2)).sum::<f64>();
            n_out += outs.len() - 1;
            means.push(Some((mi, mo)));
        }
        // With one "in" shadow per example the "in" spread is unknown: take the "out" one.
        let var_out = (ss_out / n_out.max(1) as f64).max(1e-12);
        let var_in = if n_in > 0 {
            (ss_in / n_in as f64).max(1e-12)
        } else {
            var_out
        };
        for (i, m) in means.iter().enumerate() {
            let Some((mi, mo)) = *m else { continue };
            let x = phi[t][i];
            let log_normal = |mu: f64, var: f64| -0.5 * ((x - mu).powi(2) / var + var.ln());
            out.online
                .push(log_normal(mi, var_in) - log_normal(mo, var_out));
            out.offline.push((x - mo) / var_out.sqrt());
            out.member.push(member[t][i]);
        }
    }
    out
}

/// One reading of a membership attack, as the field reports one: its query and variant, the
/// AUC, and the TPR at FPR 10⁻³ and 10⁻² with their Wilson intervals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    /// "clean" or "masked" queries.
    pub query: &'static str,
    /// "online" or "offline" LiRA, or another attack's name.
    pub variant: &'static str,
    /// ROC-AUC over every (target, example) pair.
    pub auc: f64,
    /// TPR at FPR 10⁻³, with its Wilson interval.
    pub tpr_at_0_1pct: Rate,
    /// TPR at FPR 10⁻², with its Wilson interval.
    pub tpr_at_1pct: Rate,
}

impl Reading {
    /// The reading of `scores` (larger: more likely a member) against the truth `member`.
    pub fn of(query: &'static str, variant: &'static str, scores: &[f64], member: &[bool]) -> Self {
        Reading {
            query,
            variant,
            auc: crate::roc_auc(scores, member),
            tpr_at_0_1pct: tpr_at_fpr(scores, member, 1e-3),
            tpr_at_1pct: tpr_at_fpr(scores, member, 1e-2),
        }
    }
}

/// A [`Reading`] as the columns of a CSV row: `query`, `variant`, `auc`, then each TPR with its
/// interval (`tpr_0_1pct`, `tpr_0_1pct_low`, `tpr_0_1pct_high`, `tpr_1pct`, …). The csv crate
/// writes a tuple of structs as one row, so an experiment's row is e.g.
/// `(its keys, ReadingColumns::from(&reading), its other columns)`.
#[derive(Clone, Debug, Serialize)]
pub struct ReadingColumns {
    query: &'static str,
    variant: &'static str,
    auc: f64,
    tpr_0_1pct: f64,
    tpr_0_1pct_low: f64,
    tpr_0_1pct_high: f64,
    tpr_1pct: f64,
    tpr_1pct_low: f64,
    tpr_1pct_high: f64,
}

impl From<&Reading> for ReadingColumns {
    fn from(r: &Reading) -> Self {
        ReadingColumns {
            query: r.query,
            variant: r.variant,
            auc: r.auc,
            tpr_0_1pct: r.tpr_at_0_1pct.value,
            tpr_0_1pct_low: r.tpr_at_0_1pct.low,
            tpr_0_1pct_high: r.tpr_at_0_1pct.high,
            tpr_1pct: r.tpr_at_1pct.value,
            tpr_1pct_low: r.tpr_at_1pct.low,
            tpr_1pct_high: r.tpr_at_1pct.high,
        }
    }
}

/// LiRA online and offline on the clean and on the masked queries of N models (`phi_clean`,
/// `phi_masked`: `[N][examples]`, trained on `member`): the four readings (clean online,
/// clean offline, masked online, masked offline), and the ROC curve of online LiRA on masked
/// queries (what the figures show).
pub fn read_queries(
    phi_clean: &[Vec<f64>],
    phi_masked: &[Vec<f64>],
    member: &[Vec<bool>],
) -> (Vec<Reading>, Vec<(f64, f64)>) {
    let mut readings = Vec::with_capacity(4);
    let mut roc = Vec::new();
    for (query, phi) in [("clean", phi_clean), ("masked", phi_masked)] {
        let scores = lira(phi, member);
        for (variant, s) in [("online", &scores.online), ("offline", &scores.offline)] {
            readings.push(Reading::of(query, variant, s, &scores.member));
            if (query, variant) == ("masked", "online") {
                roc = roc_curve(s, &scores.member);
            }
        }
    }
    (readings, roc)
}

/// A rate with its 95% Wilson score interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Successes over trials.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

impl Rate {
    /// `hits` of `trials`, with the 95% Wilson interval (z = 1.96).
    pub fn wilson(hits: usize, trials: usize) -> Rate {
        if trials == 0 {
            return Rate {
                value: f64::NAN,
                low: 0.0,
                high: 1.0,
            };
        }
        let (k, n, z) = (hits as f64, trials as f64, 1.959_963_984_540_054);
        let p = k / n;
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
        // The interval holds p in exact arithmetic; rounding at 0 or n hits must not move
        // an end past it.
        Rate {
            value: p,
            low: (centre - half).clamp(0.0, p),
            high: (centre + half).clamp(p, 1.0),
        }
    }
}

/// The true-positive rate at false-positive rate at most `fpr`: the threshold lets through
/// ⌊fpr · negatives⌋ negatives (the highest scores among them), and a positive counts when it
/// scores strictly above it.
pub fn tpr_at_fpr(scores: &[f64], labels: &[bool], fpr: f64) -> Rate {
    let mut negatives: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| !**l)
        .map(|(s, _)| *s)
        .collect();
    negatives.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * negatives.len() as f64).floor() as usize;
    let threshold = negatives.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let positives: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(s, _)| *s)
        .collect();
    let hits = positives.iter().filter(|&&s| s > threshold).count();
    Rate::wilson(hits, positives.len())
}

/// The ROC curve: (false-positive rate, true-positive rate) at every distinct threshold, from
/// (0, 0) to (1, 1).
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let neg = labels.iter().filter(|&&l| !l).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut curve = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        curve.push((fp / neg, tp / pos));
        i = j;
    }
    curve
}

/// The standard error of an AUC of about 0.5 for `pos` positives and `neg` negatives, under
/// the null of no separation: √((pos + neg + 1) / (12 · pos · neg)) (the Mann–Whitney
/// statistic's).
pub fn null_auc_se(pos: usize, neg: usize) -> f64 {
    let (p, n) = (pos as f64, neg as f64);
    ((p + n + 1.0) / (12.0 * p * n)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc_auc;
    use gaussmask_core::rng::Stream;

    #[test]
    fn logit_confidence_of_a_hand_case() {
        // p = (0.7, 0.2, 0.1): φ = ln(0.7 / 0.3).
        let lp: Vec<f64> = [0.7f64, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        assert!((logit_confidence(&lp, 0) - (0.7f64 / 0.3).ln()).abs() < 1e-12);
        // Far in the tail, where 1 − p_y rounds to 0 in f64, it stays finite.
        let sure = [0.0, -60.0, -61.0];
        assert!((logit_confidence(&sure, 0) - 60.0 + (1.0 + (-1f64).exp()).ln()).abs() < 1e-9);
    }

    #[test]
    fn member_halves_are_seeded_halves_each_example_in_about_half_the_models() {
        let models: Vec<Vec<bool>> = (0..64).map(|m| member_halves(101, 7, m)).collect();
        assert!(
            models
                .iter()
                .all(|h| h.iter().filter(|&&b| b).count() == 50)
        );
        assert_eq!(models[3], member_halves(101, 7, 3));
        assert_ne!(models[3], member_halves(101, 8, 3));
        // Each example is in Binomial(64, ~1/2) models: within 5 standard deviations (σ = 4).
        for i in 0..101 {
            let k = models.iter().filter(|h| h[i]).count() as f64;
            assert!((k - 32.0).abs() < 20.0, "example {i}: {k} of 64");
        }
    }

    #[test]
    fn log_error_confidence_falls_with_the_error_and_stays_finite() {
        assert!((log_error_confidence(1.5, 1.0) - 4f64.ln()).abs() < 1e-12);
        assert!(log_error_confidence(1.1, 1.0) > log_error_confidence(0.0, 1.0));
        assert!(log_error_confidence(2.0, 2.0).is_finite());
    }

    #[test]
    fn wilson_interval_of_published_cases() {
        // Wilson (1927) / Newcombe (1998) Table I: 81 of 263 → (0.2553, 0.3662).
        let r = Rate::wilson(81, 263);
        assert!(
            (r.low - 0.2553).abs() < 5e-5 && (r.high - 0.3662).abs() < 5e-5,
            "{r:?}"
        );
        // 0 of 10 → (0, 0.2775).
        let r = Rate::wilson(0, 10);
        assert!(r.low == 0.0 && (r.high - 0.2775).abs() < 5e-5, "{r:?}");
    }

    #[test]
    fn tpr_at_fpr_lets_through_the_allowed_negatives_only() {
        // Negatives 0.1 … 1.0; at FPR 0.1 one negative (1.0) may pass: threshold 0.9.
        let mut scores: Vec<f64> = (1..=10).map(|i| i as f64 / 10.0).collect();
        let mut labels = vec![false; 10];
        scores.extend([0.95, 0.9, 2.0, 0.5]);
        labels.extend([true; 4]);
        assert_eq!(tpr_at_fpr(&scores, &labels, 0.1).value, 0.5);
        // FPR 0: the threshold is the largest negative.
        assert_eq!(tpr_at_fpr(&scores, &labels, 0.0).value, 0.25);
        let curve = roc_curve(&scores, &labels);
        assert_eq!((curve[0], *curve.last().unwrap()), ((0.0, 0.0), (1.0, 1.0)));
    }

    /// φ for `models` × `examples` where a member's φ is raised by `effect` standard
    /// deviations; every model trains on a seeded random half.
    fn synthetic(models: usize, examples: usize, effect: f64) -> (Vec<Vec<f64>>, Vec<Vec<bool>>) {
        let mut s = Stream::new(5, 1);
        let base: Vec<f64> = (0..examples).map(|_| 2.0 * s.normal()).collect();
        let member: Vec<Vec<bool>> = (0..models)
            .map(|_| (0..examples).map(|_| s.uniform() < 0.5).collect())
            .collect();
        let phi = member
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&base)
                    .map(|(&m, b)| b + s.normal() + if m { effect } else { 0.0 })
                    .collect()
            })
            .collect();
        (phi, member)
    }

    #[test]
    fn without_a_membership_effect_lira_is_chance() {
        let (phi, member) = synthetic(16, 500, 0.0);
        let scores = lira(&phi, &member);
        let pos = scores.member.iter().filter(|&&m| m).count();
        let neg = scores.member.len() - pos;
        let se = null_auc_se(pos, neg);
        for s in [&scores.online, &scores.offline] {
            let auc = roc_auc(s, &scores.member);
            assert!((auc - 0.5).abs() < 4.0 * se, "AUC {auc}, SE {se}");
            // TPR at 1% FPR: within four binomial standard errors of 1%.
            let r = tpr_at_fpr(s, &scores.member, 0.01);
            let se = (0.01 * 0.99 / pos as f64).sqrt();
            assert!((r.value - 0.01).abs() < 4.0 * se, "{r:?}, SE {se}");
        }
    }

    #[test]
    fn a_membership_effect_is_found_at_low_false_positive_rates() {
        // Members one and a half standard deviations up: the likelihood ratio finds most of
        // them at 1% FPR, and online beats offline.
        let (phi, member) = synthetic(16, 500, 1.5);
        let scores = lira(&phi, &member);
        let online = tpr_at_fpr(&scores.online, &scores.member, 0.01);
        let offline = tpr_at_fpr(&scores.offline, &scores.member, 0.01);
        assert!(online.low > 0.05, "{online:?}");
        assert!(offline.low > 0.05, "{offline:?}");
        assert!(roc_auc(&scores.online, &scores.member) > 0.8);
    }
}
