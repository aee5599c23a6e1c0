//! Autodiff gradients of the masked loss against the hand-derived gradient and finite differences.
//!
//! With a fixed mask c_i per sample, u_ri = w_rᵀ(x_i ⊙ c_i), f_i = (1/√m) Σ_r a_r ReLU(u_ri) and
//! L = ½ Σ_i (f_i − y_i)², so with residual r_i = f_i − y_i
//!   ∂L/∂w_r = (1/√m) Σ_i r_i a_r 1{u_ri ≥ 0} (x_i ⊙ c_i),   ∂L/∂a_r = (1/√m) Σ_i r_i ReLU(u_ri).

use gaussmask_data::SyntheticConfig;
use gaussmask_nn::rng::Stream;
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{InputMask, MaskConfig, Replica, TwoLayerRelu, TwoLayerReluConfig, half_sse};

use crate::device64;

const R: usize = 2;
const M: usize = 6;
const D: usize = 5;
const N: usize = 9;

struct Problem {
    w: Vec<f64>,
    a: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    c: Vec<f64>,
}

fn problem() -> Problem {
    let data = SyntheticConfig::new(N, D).generate();
    let mut w = Vec::new();
    let mut a = Vec::new();
    let config = TwoLayerReluConfig::new(D, M);
    for seed in [3, 4] {
        let (wr, ar) = config.initial_weights(seed);
        w.extend(wr);
        a.extend(ar);
    }
    // Make a trainable a non-trivial: scale the signs.
    let mut s = Stream::new(99, 1);
    a.iter_mut().for_each(|v| *v *= 0.5 + s.uniform());
    let mask = MaskConfig::default().init_replicas(&replicas());
    let rows: Vec<usize> = (0..N).collect();
    let c = mask.sample(&rows, D);
    Problem {
        w,
        a,
        x: data.x,
        y: data.y,
        c,
    }
}

/// Host f64 loss of replica r.
fn host_loss(p: &Problem, w: &[f64], a: &[f64], r: usize) -> f64 {
    let scale = 1.0 / (M as f64).sqrt();
    (0..N)
        .map(|i| {
            let f: f64 = (0..M)
                .map(|k| {
                    let u: f64 = (0..D)
                        .map(|j| w[(r * M + k) * D + j] * p.x[i * D + j] * p.c[(r * N + i) * D + j])
                        .sum();
                    a[r * M + k] * u.max(0.0)
                })
                .sum::<f64>()
                * scale;
            0.5 * (f - p.y[i]).powi(2)
        })
        .sum()
}

/// Hand-derived gradients (W then a) of replica r.
fn host_grads(p: &Problem, r: usize) -> (Vec<f64>, Vec<f64>) {
    let scale = 1.0 / (M as f64).sqrt();
    let mut gw = vec![0.0; M * D];
    let mut ga = vec![0.0; M];
    for i in 0..N {
        let xc: Vec<f64> = (0..D)
            .map(|j| p.x[i * D + j] * p.c[(r * N + i) * D + j])
            .collect();
        let u: Vec<f64> = (0..M)
            .map(|k| (0..D).map(|j| p.w[(r * M + k) * D + j] * xc[j]).sum())
            .collect();
        let f: f64 = (0..M).map(|k| p.a[r * M + k] * u[k].max(0.0)).sum::<f64>() * scale;
        let res = f - p.y[i];
        for k in 0..M {
            ga[k] += scale * res * u[k].max(0.0);
            if u[k] >= 0.0 {
                for j in 0..D {
                    gw[k * D + j] += scale * res * p.a[r * M + k] * xc[j];
                }
            }
        }
    }
    (gw, ga)
}

fn autodiff_grads(p: &Problem) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let device = device64().autodiff();
    let model = TwoLayerRelu::from_weights(
        p.w.clone(),
        p.a.clone(),
        [R, M, D],
        true,
        MaskConfig::default().init_replicas(&replicas()),
        &device,
    );
    let data = gaussmask_data::Dataset {
        x: p.x.clone(),
        y: p.y.clone(),
        n: N,
        d: D,
    };
    let (x, y) = data.all_tensors(&device);
    let xm = InputMask::apply(x, p.c.clone(), R, &device);
    let loss = half_sse(model.forward_unmasked(xm), y);
    let losses = to_f64(loss.clone());
    let grads = loss.sum().backward();
    let gw = to_f64(model.w.val().grad(&grads).expect("W has a gradient"));
    let ga = to_f64(
        model
            .a
            .val()
            .grad(&grads)
            .expect("trainable a has a gradient"),
    );
    (losses, gw, ga)
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn autodiff_matches_the_hand_derived_gradient_in_f64() {
    let p = problem();
    let (losses, gw, ga) = autodiff_grads(&p);
    for r in 0..R {
        assert!(rel_err(losses[r], host_loss(&p, &p.w, &p.a, r)) < 1e-12);
        let (hw, ha) = host_grads(&p, r);
        for (k, (g, h)) in gw[r * M * D..(r + 1) * M * D].iter().zip(&hw).enumerate() {
            assert!(
                (g - h).abs() <= 1e-5 * h.abs().max(1e-8),
                "replica {r}, W entry {k}: autodiff {g} vs hand {h}"
            );
        }
        for (k, (g, h)) in ga[r * M..(r + 1) * M].iter().zip(&ha).enumerate() {
            assert!(
                (g - h).abs() <= 1e-5 * h.abs().max(1e-8),
                "replica {r}, a_{k}: {g} vs {h}"
            );
        }
    }
}

#[test]
fn autodiff_matches_central_finite_differences() {
    let p = problem();
    let (_, gw, ga) = autodiff_grads(&p);
    let h = 1e-6;
    for r in 0..R {
        for k in (0..M * D).step_by(3) {
            let idx = r * M * D + k;
            let (mut wp, mut wm) = (p.w.clone(), p.w.clone());
            wp[idx] += h;
            wm[idx] -= h;
            let fd = (host_loss(&p, &wp, &p.a, r) - host_loss(&p, &wm, &p.a, r)) / (2.0 * h);
            // Central differences err by O(h²) away from kinks; 1e-5 relative leaves room for that.
            assert!(
                (fd - gw[idx]).abs() <= 1e-5 * fd.abs().max(1e-4),
                "replica {r}, W entry {k}: fd {fd} vs autodiff {}",
                gw[idx]
            );
        }
        for k in 0..M {
            let idx = r * M + k;
            let (mut ap, mut am) = (p.a.clone(), p.a.clone());
            ap[idx] += h;
            am[idx] -= h;
            let fd = (host_loss(&p, &p.w, &ap, r) - host_loss(&p, &p.w, &am, r)) / (2.0 * h);
            assert!((fd - ga[idx]).abs() <= 1e-5 * fd.abs().max(1e-4));
        }
    }
}

/// κ and seed of the two replicas of every problem here.
fn replicas() -> [Replica; 2] {
    [(0.4, 3), (1.0, 4)].map(|(kappa, seed)| Replica { kappa, seed })
}
