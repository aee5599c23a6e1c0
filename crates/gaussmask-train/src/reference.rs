//! The two-layer network's loss and gradient in scalar f64, one sample at a time: what the
//! host-side experiments step with (federated rounds, masked neurons), written once.

/// ½ Σ_i (f(x_i) − y_i)² and, into `grad`, its gradient with respect to W, for
/// f(x) = (scale/√m) Σ_r ν_r a_r relu(w_rᵀx) with ν = `keep` (every neuron when `None`).
/// The inputs are used as given: mask them first for a masked step.
///
/// # Shapes
/// - `w`: `[m, d]` row-major, `a`: `[m]`, `keep`: `[m]`
/// - `x`: `[n, d]` row-major, `y`: `[n]`, `grad`: `[m, d]` (overwritten)
pub fn two_layer_gradient(
    w: &[f64],
    a: &[f64],
    keep: Option<&[bool]>,
    scale: f64,
    x: &[f64],
    y: &[f64],
    grad: &mut [f64],
) -> f64 {
    let m = a.len();
    let d = w.len() / m;
    let c = scale / (m as f64).sqrt();
    let kept = |r: usize| keep.is_none_or(|k| k[r]);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut z = vec![0.0; m];
    let mut loss = 0.0;
    for (xi, &yi) in x.chunks_exact(d).zip(y) {
        let mut f = 0.0;
        for r in 0..m {
            z[r] = w[r * d..(r + 1) * d]
                .iter()
                .zip(xi)
                .map(|(p, q)| p * q)
                .sum();
            if kept(r) && z[r] > 0.0 {
                f += a[r] * z[r];
            }
        }
        let res = c * f - yi;
        loss += 0.5 * res * res;
        for r in 0..m {
            if kept(r) && z[r] > 0.0 {
                let coef = res * c * a[r];
                for (g, q) in grad[r * d..(r + 1) * d].iter_mut().zip(xi) {
                    *g += coef * q;
                }
            }
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_matches_central_finite_differences() {
        let (m, d) = (3, 2);
        let w = [0.3, -0.2, 0.5, 0.4, -0.7, 0.1];
        let a = [1.0, -1.0, 1.0];
        let x = [1.0, 0.5, -0.3, 2.0, 0.8, -1.1, 0.2, 0.9];
        let y = [0.1, -0.4, 0.3, 0.2];
        for keep in [None, Some(&[true, false, true][..])] {
            let mut grad = vec![0.0; m * d];
            two_layer_gradient(&w, &a, keep, 2.0, &x, &y, &mut grad);
            let mut scratch = vec![0.0; m * d];
            for j in 0..m * d {
                let h = 1e-6;
                let (mut up, mut down) = (w, w);
                up[j] += h;
                down[j] -= h;
                let fd = (two_layer_gradient(&up, &a, keep, 2.0, &x, &y, &mut scratch)
                    - two_layer_gradient(&down, &a, keep, 2.0, &x, &y, &mut scratch))
                    / (2.0 * h);
                assert!(
                    (fd - grad[j]).abs() < 1e-7,
                    "{keep:?} {j}: {fd} vs {}",
                    grad[j]
                );
            }
        }
        // A dropped neuron gets no gradient.
        let mut grad = vec![0.0; m * d];
        two_layer_gradient(&w, &a, Some(&[true, false, true]), 1.0, &x, &y, &mut grad);
        assert_eq!(&grad[2..4], &[0.0, 0.0]);
    }
}
