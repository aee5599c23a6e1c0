//! Mask levels κ: the one check every config applies to them, and the label a κ takes in unit
//! keys, folder names and messages.

use gaussmask_core::InputError;
use serde::{Deserialize, Serialize};

/// The largest mask level accepted. Masks are drawn as c = 1 + κz with z ~ N(0, 1); an f32
/// holds 24 bits, so once κ|z| ≥ 2²⁴ ≈ 1.7·10⁷ the mean 1 of c is rounded away. At κ = 10⁶ that
/// takes |z| ≥ 17 (never drawn); at 10⁷ it is |z| ≥ 1.7, a tenth of all draws: no training at
/// such a κ measures the mask it names.
pub const KAPPA_MAX: f64 = 1e6;

/// Checks one mask level: finite, in [0, [`KAPPA_MAX`]] (−0 counts as 0).
///
/// # Errors
/// A message naming `field`.
pub fn check_kappa(field: &str, kappa: f64) -> Result<(), InputError> {
    if kappa.is_finite() && (0.0..=KAPPA_MAX).contains(&kappa) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be a number in [0, {}] (beyond it an f32 mask 1 + κz loses its mean), \
             got {}",
            kappa_label(KAPPA_MAX),
            kappa_label(kappa)
        )
        .into())
    }
}

/// Checks a κ grid: non-empty, every value as [`check_kappa`], each value once (its values key
/// units of work and result rows; 0 and −0 are one value).
///
/// # Errors
/// A message naming `field`.
pub fn check_kappa_grid(field: &str, kappas: &[f64]) -> Result<(), InputError> {
    if kappas.is_empty() {
        return Err(format!("{field} must be a non-empty list, got []").into());
    }
    for &k in kappas {
        check_kappa(field, k)?;
    }
    match (1..kappas.len()).find(|&i| kappas[..i].contains(&kappas[i])) {
        Some(i) => Err(format!(
            "{field} must be distinct values, got {} twice",
            kappa_label(kappas[i])
        )
        .into()),
        None => Ok(()),
    }
}

/// A checked κ grid (`kappas` in every config that sweeps κ): non-empty, every value as
/// [`check_kappa`], each value once. It reads as the slice of its values; a config field of
/// this type is checked as it is parsed, so no config holds a grid that fails the check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct KappaGrid(Vec<f64>);

impl KappaGrid {
    /// The grid of `kappas`, as [`check_kappa_grid`] checks it.
    ///
    /// # Errors
    /// A message naming `field`.
    pub fn new(field: &str, kappas: Vec<f64>) -> Result<Self, InputError> {
        check_kappa_grid(field, &kappas)?;
        Ok(Self(kappas))
    }

    /// The grid of one κ.
    ///
    /// # Errors
    /// A message naming `field` when κ fails [`check_kappa`].
    pub fn one(field: &str, kappa: f64) -> Result<Self, InputError> {
        Self::new(field, vec![kappa])
    }
}

impl std::ops::Deref for KappaGrid {
    type Target = [f64];

    fn deref(&self) -> &[f64] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a KappaGrid {
    type Item = &'a f64;
    type IntoIter = std::slice::Iter<'a, f64>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// What the config field `kappas` parses through.
impl TryFrom<Vec<f64>> for KappaGrid {
    type Error = InputError;

    fn try_from(kappas: Vec<f64>) -> Result<Self, InputError> {
        Self::new("kappas", kappas)
    }
}

impl From<KappaGrid> for Vec<f64> {
    fn from(grid: KappaGrid) -> Self {
        grid.0
    }
}

/// κ in a short round-trip form: plain decimals (`0.4`, `0.001`) unless the exponent form is
/// at least 3 characters shorter (`1e-5`, `1e-300` rather than 300 digits); `-0` as `0`.
pub fn kappa_label(kappa: f64) -> String {
    let kappa = kappa + 0.0;
    let plain = kappa.to_string();
    let exp = format!("{kappa:e}");
    if exp.len() + 3 <= plain.len() {
        exp
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_shortest_round_trip_form() {
        for (k, label) in [
            (0.0, "0"),
            (-0.0, "0"),
            (0.4, "0.4"),
            (1.25, "1.25"),
            (2.0, "2"),
            (1e-300, "1e-300"),
            (1e30, "1e30"),
            (123456.0, "123456"),
            (0.001, "0.001"),
            (0.0001, "0.0001"),
            (0.00001, "1e-5"),
        ] {
            assert_eq!(kappa_label(k), label, "{k}");
            assert_eq!(kappa_label(k).parse::<f64>().unwrap(), k + 0.0);
        }
    }

    #[test]
    fn grids_refuse_what_cannot_work_and_repeats() {
        check_kappa_grid("kappas", &[0.0, 0.2, 1e-300, KAPPA_MAX]).unwrap();
        check_kappa_grid("kappas", &[-0.0]).unwrap();
        for (grid, needle) in [
            (vec![], "non-empty"),
            (vec![0.5, 0.5], "0.5 twice"),
            (vec![0.0, -0.0], "0 twice"),
            (vec![1e30], "got 1e30"),
            (vec![-1.0], "got -1"),
            (vec![f64::NAN], "got NaN"),
            (vec![f64::INFINITY], "got inf"),
        ] {
            let e = check_kappa_grid("model.mask.kappa", &grid).unwrap_err();
            assert!(e.starts_with("model.mask.kappa must"), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }
}
