//! Privacy measurements of trained classifiers.
//!
//! - The ML-Leaks adversary 1 membership-inference attack (Salem et al., NDSS 2019): features
//!   are a model's top-3 sorted softmax posteriors; a logistic regression (linfa-logistic)
//!   learns member vs non-member on a shadow model trained like the target, then scores the
//!   target's members and non-members.
//! - ROC-AUC (ties counted half), accuracy, precision and recall of the attack.
//! - LiRA ([`lira`]), the likelihood-ratio attack with shadow models, reported as the field
//!   reports attacks: TPR at low FPR with its binomial interval, the AUC, the ROC curve.
//! - The accountants of DP-SGD with Poisson sampling: the privacy-loss distribution
//!   ([`pld`], tight: the ε the runs print) and the Rényi bound ([`rdp`], the cross-check).

pub mod lira;
pub mod pld;
pub mod rdp;

pub use pld::{ACCOUNTANT, noise_for_epsilon, pld_delta, pld_epsilon};
pub use rdp::{dp_sgd_epsilon, dp_sgd_epsilon_over, rdp_sampled_gaussian};

use gaussmask_core::InputError;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Number of sorted posteriors the attack sees.
pub const TOP_K: usize = 3;

/// The attack features of each row of `posteriors` `[n, classes]`: its `TOP_K` largest values,
/// largest first (fewer classes than `TOP_K` pad with 0).
pub fn top_sorted(posteriors: &[f32], classes: usize) -> Vec<[f64; TOP_K]> {
    posteriors
        .chunks_exact(classes)
        .map(|row| {
            let mut sorted: Vec<f64> = row.iter().map(|&p| p as f64).collect();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let mut top = [0.0; TOP_K];
            for (t, v) in top.iter_mut().zip(sorted) {
                *t = v;
            }
            top
        })
        .collect()
}

/// Attack features of members and non-members of one model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MembershipFeatures {
    /// Features of the model's training images.
    pub members: Vec<[f64; TOP_K]>,
    /// Features of images it never saw.
    pub non_members: Vec<[f64; TOP_K]>,
}

impl MembershipFeatures {
    fn records(&self) -> (Array2<f64>, Array1<u8>) {
        let rows: Vec<f64> = self
            .members
            .iter()
            .chain(&self.non_members)
            .flatten()
            .copied()
            .collect();
        let n = self.members.len() + self.non_members.len();
        let x = Array2::from_shape_vec((n, TOP_K), rows).expect("rows of TOP_K features");
        let y = Array1::from_iter(
            std::iter::repeat_n(1u8, self.members.len())
                .chain(std::iter::repeat_n(0u8, self.non_members.len())),
        );
        (x, y)
    }
}

/// How well an attack separates members from non-members.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackMetrics {
    /// Area under the ROC curve of the member scores.
    pub auc: f64,
    /// Accuracy of "member" at score ≥ 0.5.
    pub accuracy: f64,
    /// Precision of "member".
    pub precision: f64,
    /// Recall of "member".
    pub recall: f64,
}

/// Fits the attack on `shadow` (its members labelled 1) and scores `target`.
///
/// # Errors
/// The logistic regression cannot be fitted (e.g. one class is empty, or features are not
/// finite).
pub fn attack(
    shadow: &MembershipFeatures,
    target: &MembershipFeatures,
) -> Result<AttackMetrics, InputError> {
    let (scores, labels) = attack_scores(shadow, target)?;
    Ok(metrics(&scores, &labels))
}

/// Fits the attack on `shadow` and returns its member probability for each of `target`'s
/// members, then non-members, with the truth (true = member): what TPR at a low FPR and the
/// ROC are read from.
///
/// # Errors
/// As [`attack`].
pub fn attack_scores(
    shadow: &MembershipFeatures,
    target: &MembershipFeatures,
) -> Result<(Vec<f64>, Vec<bool>), InputError> {
    let (x, y) = shadow.records();
    let model = LogisticRegression::default()
        .max_iterations(200)
        .fit(&Dataset::new(x, y))
        .map_err(|e| format!("attack model: {e}"))?;
    let (tx, ty) = target.records();
    // The probability of the larger label, 1 = member.
    let scores = model.predict_probabilities(&tx).to_vec();
    Ok((scores, ty.iter().map(|&l| l == 1).collect()))
}

/// AUC, and accuracy/precision/recall at threshold 0.5, of `scores` for `labels` (true =
/// member).
pub fn metrics(scores: &[f64], labels: &[bool]) -> AttackMetrics {
    let (mut tp, mut fp, mut tn, mut fneg) = (0.0, 0.0, 0.0, 0.0);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= 0.5, l) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => fneg += 1.0,
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    AttackMetrics {
        auc: roc_auc(scores, labels),
        accuracy: ratio(tp + tn, tp + tn + fp + fneg),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fneg),
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney statistic over n₊n₋). NaN without both
/// classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over tied groups, then the rank sum of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * rank;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_hand_case_and_of_ties() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1)
        // → 3 of 4.
        let auc = roc_auc(&[0.9, 0.4, 0.5, 0.1], &[true, true, false, false]);
        assert!((auc - 0.75).abs() < 1e-15);
        // All scores tied: every pair counts one half.
        assert_eq!(roc_auc(&[0.3; 4], &[true, false, true, false]), 0.5);
        // One tie between a positive and a negative among otherwise separated scores:
        // pairs (0.8 vs 0.8) = ½, (0.8 vs 0.2) = 1, (0.9 vs both) = 2 → 3.5 of 4.
        let auc = roc_auc(&[0.9, 0.8, 0.8, 0.2], &[true, true, false, false]);
        assert!((auc - 0.875).abs() < 1e-15);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn threshold_metrics_of_a_hand_case() {
        let m = metrics(&[0.9, 0.6, 0.4, 0.7], &[true, false, true, false]);
        // Predicted members: 0.9 (tp), 0.6 (fp), 0.7 (fp); 0.4 is a missed member.
        assert_eq!((m.accuracy, m.precision, m.recall), (0.25, 1.0 / 3.0, 0.5));
    }

    #[test]
    fn top_sorted_takes_the_three_largest_in_order() {
        let f = top_sorted(&[0.1, 0.5, 0.05, 0.35, 0.2, 0.2, 0.6, 0.0], 4);
        assert_eq!(f[0], [0.5f32 as f64, 0.35f32 as f64, 0.1f32 as f64]);
        assert_eq!(f[1], [0.6f32 as f64, 0.2f32 as f64, 0.2f32 as f64]);
    }

    #[test]
    fn the_attack_separates_confident_members_from_unsure_non_members() {
        let confident = |p: f64| [p, (1.0 - p) * 0.6, (1.0 - p) * 0.3];
        let features = |shift: f64| MembershipFeatures {
            members: (0..50)
                .map(|i| confident(0.9 + shift + i as f64 * 1e-3))
                .collect(),
            non_members: (0..50)
                .map(|i| confident(0.5 + shift + i as f64 * 4e-3))
                .collect(),
        };
        let m = attack(&features(0.0), &features(0.01)).unwrap();
        assert!(m.auc > 0.99 && m.accuracy > 0.9, "{m:?}");
    }
}
