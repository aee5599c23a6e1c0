//! DP-SGD as the privacy accountants model it: Poisson-sampled batches, and the per-sample
//! clipped and noised gradient over the expected batch size.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::{Stream, derive_seed, tag};
use gaussmask_nn::tensor_io::from_f64;

use super::{DpSgd, Trainable, batch};

/// The rows of DP-SGD's step `step` under Poisson sampling: each of the `n` rows joins
/// independently with probability `q`. The draws come from a stream keyed by `seed` and the
/// step, so a resumed run samples what the uninterrupted one did with no sampler state saved.
pub fn poisson_rows(n: usize, q: f64, seed: u64, step: u64) -> Vec<usize> {
    let mut draws = Stream::new(derive_seed(seed, tag::POISSON, &[step]), tag::POISSON);
    (0..n).filter(|_| draws.uniform() < q).collect()
}

/// DP-SGD's gradient of the sampled rows `rows`: each sample's gradient (its own mask),
/// clipped to norm ≤ C, summed, plus N(0, (σC)²) noise per coordinate, over the expected
/// batch size q·n (not the drawn one, which would depend on the data). Returns the mean
/// per-sample loss of the drawn rows too (of every row when none was drawn, for the log). The
/// clipped sum is the model's own [`Trainable::clipped_gradient_sum`] where it has one, else
/// [`per_sample_clipped_sum`].
pub(super) fn dp_gradients<M: Trainable>(
    model: &M,
    data: &Dataset,
    rows: &[usize],
    expected: f64,
    dp: DpSgd,
    noise: &mut Stream,
    device: &Device,
) -> (Tensor<1>, GradientsParams) {
    let fast = match rows.is_empty() {
        true => None,
        false => model.clipped_gradient_sum(&batch(data, rows, device), dp.clip),
    };
    let (mut sum, mut loss_sum) = match fast {
        Some((loss, grads)) => (flat_gradients(model, &grads), Some(loss)),
        None => per_sample_clipped_sum(model, data, rows, dp.clip, device),
    };
    let std = dp.noise_multiplier * dp.clip;
    if sum.is_empty() {
        // No row drawn: the update is the noise alone, on every parameter with a gradient.
        let all: Vec<usize> = (0..data.n).collect();
        let loss = model.loss(&batch(data, &all, device)).sum();
        let grads = GradientsParams::from_grads(loss.clone().backward(), model);
        sum = flat_gradients(model, &grads)
            .into_iter()
            .map(|(id, g)| (id, g * 0.0))
            .collect();
        loss_sum = Some(loss.detach());
    }
    let b = expected;
    let values = sum
        .into_iter()
        .map(|(id, acc)| {
            let count = acc.dims()[0];
            let z: Vec<f64> = (0..count).map(|_| std * noise.normal()).collect();
            let device = acc.device();
            (id, (acc + from_f64(z, [count], &device)) * (1.0 / b))
        })
        .collect();
    let mut out = GradientsParams::new();
    model.visit(&mut Register {
        values,
        out: &mut out,
    });
    let drawn = rows.len().max(1) as f64;
    let loss = loss_sum.expect("the loss is set above") * (1.0 / drawn);
    (loss, out)
}

/// The clipped gradient sum of `rows` the plain way, a backward pass per sample: each
/// sample's gradient scaled to norm ≤ `clip` and summed, flattened per parameter in visiting
/// order (empty without rows), with the sum of the samples' losses (`None` without rows).
/// What [`Trainable::clipped_gradient_sum`] must reproduce.
pub fn per_sample_clipped_sum<M: Trainable>(
    model: &M,
    data: &Dataset,
    rows: &[usize],
    clip: f64,
    device: &Device,
) -> (Vec<(ParamId, Tensor<1>)>, Option<Tensor<1>>) {
    let mut sum: Vec<(ParamId, Tensor<1>)> = Vec::new();
    let mut loss_sum: Option<Tensor<1>> = None;
    for &row in rows {
        let loss = model.loss(&batch(data, &[row], device)).sum();
        let grads = GradientsParams::from_grads(loss.clone().backward(), model);
        let flat = flat_gradients(model, &grads);
        let squares: Vec<Tensor<1>> = flat.iter().map(|(_, g)| g.clone().square().sum()).collect();
        let norm = Tensor::cat(squares, 0).sum().into_scalar::<f64>().sqrt();
        let scale = (clip / norm.max(f64::MIN_POSITIVE)).min(1.0);
        if sum.is_empty() {
            sum = flat.into_iter().map(|(id, g)| (id, g * scale)).collect();
        } else {
            for (acc, (_, g)) in sum.iter_mut().zip(flat) {
                acc.1 = acc.1.clone() + g * scale;
            }
        }
        let loss = loss.detach();
        loss_sum = Some(match loss_sum {
            None => loss,
            Some(acc) => acc + loss,
        });
    }
    (sum, loss_sum)
}

/// Each trainable parameter's gradient in `grads`, flattened, in visiting order.
pub fn flat_gradients<M: Trainable>(
    model: &M,
    grads: &GradientsParams,
) -> Vec<(ParamId, Tensor<1>)> {
    let mut flat = Flatten {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut flat);
    flat.out
}

/// Each trainable parameter's gradient, flattened, in visiting order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: Vec<(ParamId, Tensor<1>)>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let count = g.dims().iter().product::<usize>();
            self.out.push((param.id, g.reshape([count])));
        }
    }
}

/// Registers flattened gradients under their parameters, in the parameters' shapes.
struct Register<'a> {
    values: Vec<(ParamId, Tensor<1>)>,
    out: &'a mut GradientsParams,
}

impl ModuleVisitor for Register<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(i) = self.values.iter().position(|(id, _)| *id == param.id) {
            let (id, value) = self.values.swap_remove(i);
            self.out.register::<D>(id, value.reshape(param.dims()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::poisson_rows;

    #[test]
    fn poisson_batch_sizes_have_mean_qn_and_variance_q_one_minus_q_n() {
        let (n, q, steps) = (1000usize, 0.1, 4000u64);
        let sizes: Vec<f64> = (0..steps)
            .map(|t| poisson_rows(n, q, 7, t).len() as f64)
            .collect();
        let s = steps as f64;
        let mean = sizes.iter().sum::<f64>() / s;
        let var = sizes.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (s - 1.0);
        let (want_mean, want_var) = (q * n as f64, q * (1.0 - q) * n as f64);
        // Standard errors: √(var/s) for the mean; var·√(2/(s − 1)) for the variance (the
        // binomial's excess kurtosis is below 0.01 here).
        let se_mean = (want_var / s).sqrt();
        let se_var = want_var * (2.0 / (s - 1.0)).sqrt();
        assert!(
            (mean - want_mean).abs() < 4.0 * se_mean,
            "{mean} vs {want_mean}"
        );
        assert!((var - want_var).abs() < 4.0 * se_var, "{var} vs {want_var}");
    }

    #[test]
    fn a_step_draws_the_same_rows_every_time_and_steps_differ() {
        assert_eq!(poisson_rows(500, 0.2, 3, 17), poisson_rows(500, 0.2, 3, 17));
        assert_ne!(poisson_rows(500, 0.2, 3, 17), poisson_rows(500, 0.2, 3, 18));
        assert_ne!(poisson_rows(500, 0.2, 3, 17), poisson_rows(500, 0.2, 4, 17));
        assert_eq!(poisson_rows(50, 1.0, 3, 0), (0..50).collect::<Vec<_>>());
    }
}
