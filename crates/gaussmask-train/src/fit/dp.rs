//! DP-SGD's per-sample clipped and noised gradient.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::Stream;
use gaussmask_nn::tensor_io::from_f64;

use super::{DpSgd, Trainable, batch};

/// DP-SGD's gradient of the samples `rows`: each sample's gradient (its own mask), clipped to
/// norm ≤ C, summed, plus N(0, (σC)²) noise per coordinate, over the batch size. Returns the
/// mean per-sample loss too.
pub(super) fn dp_gradients<M: Trainable>(
    model: &M,
    data: &Dataset,
    rows: &[usize],
    dp: DpSgd,
    noise: &mut Stream,
    device: &Device,
) -> (Tensor<1>, GradientsParams) {
    let mut sum: Vec<(ParamId, Tensor<1>)> = Vec::new();
    let mut loss_sum: Option<Tensor<1>> = None;
    for &row in rows {
        let loss = model.loss(&batch(data, &[row], device)).sum();
        let grads = GradientsParams::from_grads(loss.clone().backward(), model);
        let mut flat = Flatten {
            grads: &grads,
            out: Vec::new(),
        };
        model.visit(&mut flat);
        let squares: Vec<Tensor<1>> = flat
            .out
            .iter()
            .map(|(_, g)| g.clone().square().sum())
            .collect();
        let norm = Tensor::cat(squares, 0).sum().into_scalar::<f64>().sqrt();
        let scale = (dp.clip / norm.max(f64::MIN_POSITIVE)).min(1.0);
        if sum.is_empty() {
            sum = flat
                .out
                .into_iter()
                .map(|(id, g)| (id, g * scale))
                .collect();
        } else {
            for (acc, (_, g)) in sum.iter_mut().zip(flat.out) {
                acc.1 = acc.1.clone() + g * scale;
            }
        }
        let loss = loss.detach();
        loss_sum = Some(match loss_sum {
            None => loss,
            Some(acc) => acc + loss,
        });
    }
    let std = dp.noise_multiplier * dp.clip;
    let b = rows.len() as f64;
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
    let loss = loss_sum.expect("a batch has rows") * (1.0 / b);
    (loss, out)
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
