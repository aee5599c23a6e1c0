//! The kernels on plain row-major slices: a stride-1 2-D convolution by im2col and gemm (forward,
//! input gradient by col2im, weight and bias gradients) and training-mode batch normalization.
//!
//! Every kernel is deterministic whatever the thread count: samples are split into fixed
//! chunks, and the per-chunk partial sums are added in chunk order.

use std::ops::{Add, Mul, Sub};

use rayon::prelude::*;

/// Samples per parallel chunk of the convolution's backward (fixed, so the weight gradient's
/// summation order does not depend on the thread count).
const CHUNK: usize = 8;

/// The float types the kernels run in (f32 by default, f64 for verification).
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
{
    /// 0.
    const ZERO: Self;
    /// `v` rounded to this type.
    fn of(v: f64) -> Self;
    /// The value as f64.
    fn get(self) -> f64;
    /// The larger of the two, without a branch (max-pool windows compare at random).
    fn max(self, other: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    fn of(v: f64) -> Self {
        v as f32
    }
    fn get(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    fn of(v: f64) -> Self {
        v
    }
    fn get(self) -> f64 {
        self
    }
}

/// A stride-1, dilation-1, ungrouped convolution's sizes, with the same zero padding on every
/// side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel side.
    pub k: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    pub fn out_w(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    /// Rows of the im2col matrix: c·k·k.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Columns of the im2col matrix: output positions.
    fn positions(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn output_len(&self) -> usize {
        self.o * self.positions()
    }

    /// For kernel offset `kj`, the output columns whose input column lies inside the image.
    fn valid_columns(&self, kj: usize) -> (usize, usize) {
        let hi = (self.w + self.pad).saturating_sub(kj).min(self.out_w());
        let lo = self.pad.saturating_sub(kj).min(hi);
        (lo, hi)
    }

    /// Visits every (im2col row, output row) pair with the input row it reads (None: padding),
    /// the valid column range, and the input offset of the first valid column.
    fn for_each_tap_row(&self, mut f: impl FnMut(usize, usize, Option<usize>, (usize, usize))) {
        let (k, p, l, wo) = (self.k, self.pad, self.positions(), self.out_w());
        for ci in 0..self.c {
            for ki in 0..k {
                for kj in 0..k {
                    let row = ((ci * k + ki) * k + kj) * l;
                    let (lo, hi) = self.valid_columns(kj);
                    for oi in 0..self.out_h() {
                        let si = (oi + ki).checked_sub(p).filter(|&si| si < self.h);
                        // The input offset of output column lo (its column is lo + kj − p ≥ 0).
                        let src = si.map(|si| (ci * self.h + si) * self.w + lo + kj - p);
                        f(row + oi * wo, oi, src, (lo, hi));
                    }
                }
            }
        }
    }
}

/// im2col of one sample: `cols[(ci·k + ki)·k + kj, oi·wo + oj] = x[ci, oi + ki − p, oj + kj − p]`
/// (0 outside the image).
///
/// # Shapes
/// - `x`: `[c, h, w]`, `cols`: `[c·k·k, ho·wo]`
fn im2col<T: Real>(g: &ConvGeometry, x: &[T], cols: &mut [T]) {
    let wo = g.out_w();
    g.for_each_tap_row(|at, _, src, (lo, hi)| {
        let dst = &mut cols[at..at + wo];
        match src {
            None => dst.fill(T::ZERO),
            Some(src) => {
                dst[..lo].fill(T::ZERO);
                dst[hi..].fill(T::ZERO);
                dst[lo..hi].copy_from_slice(&x[src..src + hi - lo]);
            }
        }
    });
}

/// col2im of one sample, the adjoint of [`im2col`]: adds every column entry back onto the
/// input value it was copied from.
///
/// # Shapes
/// - `cols`: `[c·k·k, ho·wo]`, `dx`: `[c, h, w]` (zeroed first)
fn col2im<T: Real>(g: &ConvGeometry, cols: &[T], dx: &mut [T]) {
    dx.fill(T::ZERO);
    g.for_each_tap_row(|at, _, src, (lo, hi)| {
        if let Some(src) = src {
            for (d, &c) in dx[src..src + hi - lo]
                .iter_mut()
                .zip(&cols[at + lo..at + hi])
            {
                *d = *d + c;
            }
        }
    });
}

/// dst = alpha·dst + lhs·rhs for an m×k `lhs` and a k×n `rhs`, each given as (values, column
/// stride, row stride); `dst` is row-major m×n. On the calling thread.
///
/// Every index gemm touches is checked to lie inside the slices first (a panic otherwise), so
/// the call is safe.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    (lhs, lhs_cs, lhs_rs): (&[T], usize, usize),
    (rhs, rhs_cs, rhs_rs): (&[T], usize, usize),
) {
    let last = |rows: usize, cols: usize, cs: usize, rs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(dst.len() >= m * n);
    assert!(m * k == 0 || last(m, k, lhs_cs, lhs_rs) < lhs.len());
    assert!(k * n == 0 || last(k, n, rhs_cs, rhs_rs) < rhs.len());
    // SAFETY: every index gemm reads or writes lies inside the slices, as checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { T::of(1.0) } else { T::ZERO },
            T::of(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// y = conv(x, weight) + bias, samples in parallel.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `weight`: `[o, c, k, k]`, `bias`: `[o]`; returns `[b, o, ho, wo]`
pub(crate) fn conv2d<T: Real>(g: &ConvGeometry, x: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
    let (taps, l) = (g.taps(), g.positions());
    let batch = x.len() / g.input_len();
    let mut y = vec![T::ZERO; batch * g.output_len()];
    y.par_chunks_mut(g.output_len())
        .zip(x.par_chunks(g.input_len()))
        .for_each_init(
            || vec![T::ZERO; taps * l],
            |cols, (yb, xb)| {
                im2col(g, xb, cols);
                gemm(g.o, l, taps, yb, false, (weight, 1, taps), (cols, 1, l));
                for (row, &b) in yb.chunks_exact_mut(l).zip(bias) {
                    row.iter_mut().for_each(|v| *v = *v + b);
                }
            },
        );
    y
}

/// Which gradients [`conv2d_backward`] forms; the others come back as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// ∂x: a first layer's input needs none.
    pub input: bool,
    /// ∂weight and ∂bias: a layer whose parameters enter untracked (DP-SGD's probed pass,
    /// which forms per-sample gradients itself) needs none.
    pub params: bool,
}

/// Gradients of [`conv2d`] with respect to x, the weight and the bias, given ∂L/∂y, those
/// `wanted`.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `weight`: `[o, c, k, k]`, `dy`: `[b, o, ho, wo]`; returns
///   (`[b, c, h, w]`, `[o, c, k, k]`, `[o]`)
pub(crate) fn conv2d_backward<T: Real>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    dy: &[T],
    wanted: Wanted,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (taps, l, o) = (g.taps(), g.positions(), g.o);
    let mut dx = vec![T::ZERO; x.len()];
    // Each chunk of CHUNK samples sums its own weight and bias gradients...
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(CHUNK * g.input_len())
        .zip(x.par_chunks(CHUNK * g.input_len()))
        .zip(dy.par_chunks(CHUNK * g.output_len()))
        .map(|((dxc, xc), dyc)| {
            let (mut dw, mut db) = (vec![T::ZERO; o * taps], vec![T::ZERO; o]);
            let (mut cols, mut dcols) = (vec![T::ZERO; taps * l], vec![T::ZERO; taps * l]);
            for ((dxb, xb), dyb) in dxc
                .chunks_exact_mut(g.input_len())
                .zip(xc.chunks_exact(g.input_len()))
                .zip(dyc.chunks_exact(g.output_len()))
            {
                if wanted.params {
                    weight_term(g, xb, dyb, &mut cols, &mut dw, true);
                    for (d, row) in db.iter_mut().zip(dyb.chunks_exact(l)) {
                        *d = row.iter().fold(*d, |s, &v| s + v);
                    }
                }
                if wanted.input {
                    // ∂cols_b = Wᵀ · dy_b, then back onto the input.
                    let wt = (weight, taps, 1);
                    gemm(taps, l, o, &mut dcols, false, wt, (dyb, 1, l));
                    col2im(g, &dcols, dxb);
                }
            }
            (dw, db)
        })
        .collect();
    // ...and the chunks are added in order.
    let (mut dw, mut db) = (vec![T::ZERO; o * taps], vec![T::ZERO; o]);
    for (pw, pb) in partials {
        dw.iter_mut().zip(pw).for_each(|(d, p)| *d = *d + p);
        db.iter_mut().zip(pb).for_each(|(d, p)| *d = *d + p);
    }
    (dx, dw, db)
}

/// Each sample's weight gradient of [`conv2d`], given ∂L/∂y: dy_i · cols_iᵀ, the terms
/// [`conv2d_backward`] sums, each written to its own slot (DP-SGD clips them one by one).
/// Samples in parallel.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `dy`: `[b, o, ho, wo]`; returns `[b, o, c·k·k]`
pub(crate) fn conv2d_per_sample_weight<T: Real>(g: &ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (taps, l, o) = (g.taps(), g.positions(), g.o);
    let batch = x.len() / g.input_len();
    let mut dw = vec![T::ZERO; batch * o * taps];
    dw.par_chunks_mut(o * taps)
        .zip(x.par_chunks(g.input_len()))
        .zip(dy.par_chunks(g.output_len()))
        .for_each_init(
            || vec![T::ZERO; taps * l],
            |cols, ((dwb, xb), dyb)| weight_term(g, xb, dyb, cols, dwb, false),
        );
    dw
}

/// Sample b's weight-gradient term dy_b · cols_bᵀ, added to `dw` or (not `accumulate`)
/// written over it; `cols` is scratch for the sample's im2col.
///
/// # Shapes
/// - `x`: `[c, h, w]`, `dy`: `[o, ho, wo]`, `cols`: `[c·k·k, ho·wo]`, `dw`: `[o, c·k·k]`
fn weight_term<T: Real>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    cols: &mut [T],
    dw: &mut [T],
    accumulate: bool,
) {
    let (taps, l) = (g.taps(), g.positions());
    im2col(g, x, cols);
    // colsᵀ read through swapped strides.
    gemm(g.o, taps, l, dw, accumulate, (dy, 1, l), (cols, l, 1));
}

/// Σ a_i and Σ a_i b_i in f64, in 8 independent lanes (so the adds vectorize).
#[inline(always)]
fn sum_and_dot<T: Real>(a: &[T], b: &[T]) -> (f64, f64) {
    let (mut s, mut d) = ([0.0f64; 8], [0.0f64; 8]);
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x.get() * y.get())
        .sum();
    let tail_sum: f64 = ac.remainder().iter().map(|x| x.get()).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            s[i] += x[i].get();
            d[i] += x[i].get() * y[i].get();
        }
    }
    (
        s.iter().sum::<f64>() + tail_sum,
        d.iter().sum::<f64>() + tail,
    )
}

/// The values of channel `c` of every sample, as one slice per sample.
///
/// # Shapes
/// - `x`: `[b, channels, s]`
fn channel<T: Real>(x: &[T], channels: usize, s: usize, c: usize) -> impl Iterator<Item = &[T]> {
    x.chunks_exact(channels * s)
        .map(move |xb| &xb[c * s..(c + 1) * s])
}

/// Training-mode batch normalization over the batch and the positions of each channel:
/// y = γ (x − μ) / √(σ² + ε) + β with the batch's mean μ and biased variance σ².
///
/// # Shapes
/// - `x`: `[b, channels, s]`, `gamma`, `beta`: `[channels]`; returns (`y` like `x`, `μ`, `σ²`)
pub(crate) fn batch_norm_train<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    s: usize,
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let channels = gamma.len();
    let n = (x.len() / channels) as f64;
    // Two passes per channel: the mean, then the variance of the centred values (as exact as
    // the data allows); channels in parallel.
    let stats: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let mean = channel(x, channels, s, c)
                .map(|xs| sum_and_dot(xs, xs).0)
                .sum::<f64>()
                / n;
            let mut centred = vec![T::ZERO; s];
            let mut sq = 0.0;
            for xs in channel(x, channels, s, c) {
                let mu = T::of(mean);
                centred.iter_mut().zip(xs).for_each(|(d, &v)| *d = v - mu);
                sq += sum_and_dot(&centred, &centred).1;
            }
            (mean, sq / n)
        })
        .collect();
    // y = (x − μ)·scale + β, samples in parallel.
    let coef: Vec<[T; 3]> = (0..channels)
        .map(|c| {
            let (mean, var) = stats[c];
            [
                T::of(mean),
                T::of(gamma[c].get() / (var + epsilon).sqrt()),
                beta[c],
            ]
        })
        .collect();
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(channels * s)
        .zip(x.par_chunks(channels * s))
        .for_each(|(yb, xb)| {
            for ((ys, xs), &[mu, scale, shift]) in
                yb.chunks_exact_mut(s).zip(xb.chunks_exact(s)).zip(&coef)
            {
                for (o, &v) in ys.iter_mut().zip(xs) {
                    *o = (v - mu) * scale + shift;
                }
            }
        });
    let (mean, var) = stats.into_iter().map(|(m, v)| (T::of(m), T::of(v))).unzip();
    (y, mean, var)
}

/// Gradients of [`batch_norm_train`] with respect to x, γ and β, given ∂L/∂y and the batch
/// statistics it returned: ∂x = γ/σ (∂y − mean(∂y) − x̂ · mean(∂y · x̂)), x̂ = (x − μ)/σ.
///
/// # Shapes
/// - `x`, `dy`: `[b, channels, s]`, `gamma`, `mean`, `var`: `[channels]`; returns (`[b, channels,
///   s]`, `[channels]`, `[channels]`)
pub(crate) fn batch_norm_train_backward<T: Real>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    epsilon: f64,
    dy: &[T],
    s: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let channels = gamma.len();
    let n = (x.len() / channels) as f64;
    let inv_std: Vec<f64> = var
        .iter()
        .map(|v| 1.0 / (v.get() + epsilon).sqrt())
        .collect();
    // Σ ∂y (= ∂β) and Σ ∂y·x̂ (= ∂γ) per channel, in one pass; channels in parallel.
    let sums: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let mu = mean[c];
            let mut centred = vec![T::ZERO; s];
            let (mut sdy, mut sdyx) = (0.0, 0.0);
            for (xs, ds) in channel(x, channels, s, c).zip(channel(dy, channels, s, c)) {
                centred.iter_mut().zip(xs).for_each(|(d, &v)| *d = v - mu);
                let (a, b) = sum_and_dot(ds, &centred);
                sdy += a;
                sdyx += b;
            }
            (sdy, sdyx * inv_std[c])
        })
        .collect();
    // ∂x = k ∂y + kx (x − μ) + k0 per channel, with k = γ/σ, kx = −k mean(∂y · x̂)/σ and
    // k0 = −k mean(∂y).
    let coef: Vec<[T; 4]> = (0..channels)
        .map(|c| {
            let k = gamma[c].get() * inv_std[c];
            let (mdy, mdyx) = (sums[c].0 / n, sums[c].1 / n);
            [k, -k * mdyx * inv_std[c], mean[c].get(), -k * mdy].map(T::of)
        })
        .collect();
    let mut dx = vec![T::ZERO; x.len()];
    dx.par_chunks_mut(channels * s)
        .zip(x.par_chunks(channels * s))
        .zip(dy.par_chunks(channels * s))
        .for_each(|((ob, xb), db)| {
            let per_channel = ob
                .chunks_exact_mut(s)
                .zip(xb.chunks_exact(s))
                .zip(db.chunks_exact(s));
            for (((os, xs), ds), &[k, kx, mu, k0]) in per_channel.zip(&coef) {
                for ((o, &a), &d) in os.iter_mut().zip(xs).zip(ds) {
                    *o = k * d + kx * (a - mu) + k0;
                }
            }
        });
    let (dbeta, dgamma): (Vec<T>, Vec<T>) =
        sums.into_iter().map(|(a, b)| (T::of(a), T::of(b))).unzip();
    (dx, dgamma, dbeta)
}

/// relu then 2×2 max-pool with stride 2 (odd trailing rows and columns dropped, as Burn's
/// max-pool does): y = max(0, max of the window). Planes in parallel.
///
/// # Shapes
/// - `x`: `[planes, h, w]` (planes = batch × channels); returns `[planes, h/2, w/2]`
pub(crate) fn relu_max_pool2<T: Real>(x: &[T], h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = vec![T::ZERO; x.len() / (h * w) * ho * wo];
    if ho * wo == 0 {
        return y;
    }
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for (i, yrow) in yp.chunks_exact_mut(wo).enumerate() {
                let (r0, r1) = (&xp[2 * i * w..][..w], &xp[(2 * i + 1) * w..][..w]);
                for (j, out) in yrow.iter_mut().enumerate() {
                    let (a, b) = (r0[2 * j].max(r0[2 * j + 1]), r1[2 * j].max(r1[2 * j + 1]));
                    *out = a.max(b).max(T::ZERO);
                }
            }
        });
    y
}

/// Gradient of [`relu_max_pool2`]: each window's ∂y goes to its first largest value when that
/// is positive (the relu passes it), nowhere otherwise.
///
/// # Shapes
/// - `x`: `[planes, h, w]`, `dy`: `[planes, h/2, w/2]`; returns `[planes, h, w]`
pub(crate) fn relu_max_pool2_backward<T: Real>(x: &[T], dy: &[T], h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / 2, w / 2);
    let mut dx = vec![T::ZERO; x.len()];
    if ho * wo == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(dy.par_chunks(ho * wo))
        .for_each(|((dp, xp), gp)| {
            for (i, grow) in gp.chunks_exact(wo).enumerate() {
                for (j, &g) in grow.iter().enumerate() {
                    let at = [
                        2 * i * w + 2 * j,
                        2 * i * w + 2 * j + 1,
                        (2 * i + 1) * w + 2 * j,
                        (2 * i + 1) * w + 2 * j + 1,
                    ];
                    let m = at.iter().fold(T::ZERO, |m, &a| m.max(xp[a]));
                    if m > T::ZERO {
                        // The first position holding the max (selects, not branches).
                        let mut first = at[3];
                        for &a in at[..3].iter().rev() {
                            first = if xp[a] == m { a } else { first };
                        }
                        dp[first] = g;
                    }
                }
            }
        });
    dx
}
