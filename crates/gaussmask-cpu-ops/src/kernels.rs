//! The kernels on plain row-major slices: a stride-1 2-D convolution as direct correlations on
//! the padded planes (forward, input gradient, weight and bias gradients, each sample's weight
//! gradient), register-tiled and compiled for the CPU's vector units, training-mode batch
//! normalization, and the scale-and-relu passes of a deep MLP's layer.
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
    /// self · a + b, rounded once.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
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
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
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
    /// Weights per output channel: c·k·k.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }
    fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn output_len(&self) -> usize {
        self.o * self.out_h() * self.out_w()
    }
    /// The forward correlation: the input planes, padded by `pad`.
    fn forward_grid(&self) -> WideGrid {
        WideGrid {
            c: self.c,
            h: self.h,
            w: self.w,
            k: self.k,
            pad: self.pad as isize,
        }
    }
    /// The input gradient's correlation: ∂y's planes padded by k − 1 − pad (cropped where
    /// that is negative), against the flipped kernel; its outputs are the input's positions.
    fn input_grad_grid(&self) -> WideGrid {
        WideGrid {
            c: self.o,
            h: self.out_h(),
            w: self.out_w(),
            k: self.k,
            pad: self.k as isize - 1 - self.pad as isize,
        }
    }
}

/// The `c` zero-padded planes of a k×k correlation, with its outputs addressed on the *wide
/// grid*: output (i, j) at i·wp + j, the padded row width wp. From there tap (ci, ki, kj) reads
/// the planes at the fixed shift ci·hp·wp + ki·wp + kj, so the kernels read the planes directly
/// (no im2col copy).
#[derive(Clone, Copy, Debug)]
struct WideGrid {
    /// Planes.
    c: usize,
    /// Unpadded height and width.
    h: usize,
    w: usize,
    /// Kernel side.
    k: usize,
    /// Zeros added on every side (rows and columns cropped where negative).
    pad: isize,
}

impl WideGrid {
    /// Padded height and width.
    fn hp(&self) -> usize {
        (self.h as isize + 2 * self.pad) as usize
    }
    fn wp(&self) -> usize {
        (self.w as isize + 2 * self.pad) as usize
    }
    /// Output rows and valid output columns.
    fn out_h(&self) -> usize {
        self.hp() + 1 - self.k
    }
    fn out_w(&self) -> usize {
        self.wp() + 1 - self.k
    }
    /// Length of the padded planes.
    fn src_len(&self) -> usize {
        self.c * self.hp() * self.wp()
    }
    /// Each tap's shift, taps in weight order (ci, ki, kj).
    fn shifts(&self) -> Vec<usize> {
        let (k, hp, wp) = (self.k, self.hp(), self.wp());
        (0..self.c * k * k)
            .map(|t| (t / (k * k)) * hp * wp + (t / k % k) * wp + t % k)
            .collect()
    }
    /// The wide-grid index of every output, row-major.
    fn outputs(&self) -> Vec<usize> {
        let (wo, wp) = (self.out_w(), self.wp());
        (0..self.out_h() * wo)
            .map(|p| p / wo * wp + p % wo)
            .collect()
    }

    /// Writes one sample's planes, zero-padded, into `src` (`src_len` long).
    ///
    /// # Shapes
    /// - `x`: `[c, h, w]`
    fn fill<T: Real>(&self, x: &[T], src: &mut [T]) {
        let (hp, wp) = (self.hp(), self.wp());
        src.fill(T::ZERO);
        // Columns: destination and source starts, and how many are copied.
        let (dst0, src0) = (self.pad.max(0) as usize, (-self.pad).max(0) as usize);
        let len = (self.w - src0.min(self.w)).min(wp - dst0.min(wp));
        for ci in 0..self.c {
            for r in 0..hp {
                let sr = r as isize - self.pad;
                if (0..self.h as isize).contains(&sr) {
                    let from = (ci * self.h + sr as usize) * self.w + src0;
                    let to = (ci * hp + r) * wp + dst0;
                    src[to..to + len].copy_from_slice(&x[from..from + len]);
                }
            }
        }
    }
}

/// `dst[j, i] = src[i, j]`.
///
/// # Shapes
/// - `src`: `[rows, cols]`, `dst`: `[cols, rows]`
fn transpose<T: Real>(src: &[T], rows: usize, dst: &mut [T]) {
    let cols = src.len() / rows;
    for (i, row) in src.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            dst[j * rows + i] = v;
        }
    }
}

/// Whether relu lets `v` through: positive or NaN (NaN propagates, as in Burn's relu).
#[inline(always)]
fn passes_relu<T: Real>(v: T) -> bool {
    !matches!(
        v.partial_cmp(&T::ZERO),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// `v ← relu(scale · v)`, the product rounded before the relu as in Burn's `relu(v * scale)`.
#[inline(always)]
fn scaled_relu_generic<T: Real>(v: &mut [T], scale: T) {
    for x in v {
        let s = *x * scale;
        *x = if passes_relu(s) { s } else { T::ZERO };
    }
}

multiversion!(scaled_relu, scaled_relu_generic, (v: &mut [T], scale: T) -> ());

/// `grad ← scale · grad` where `output` passed the relu, 0 elsewhere: ∂y of relu(scale · z)
/// carried back to z, with Burn's rounding (the relu's mask, then the product).
#[inline(always)]
fn relu_scale_backward_generic<T: Real>(output: &[T], grad: &mut [T], scale: T) {
    for (g, &o) in grad.iter_mut().zip(output) {
        *g = if passes_relu(o) { *g * scale } else { T::ZERO };
    }
}

multiversion!(relu_scale_backward, relu_scale_backward_generic,
    (output: &[T], grad: &mut [T], scale: T) -> ());

/// A stack of matrices in one buffer: matrix b's entry (i, j) is
/// `values[offset + b·batch + i·rows + j·cols]` (strides in elements; `batch` is 0 for one
/// matrix shared by the stack).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stacked<'a, T> {
    pub values: &'a [T],
    pub offset: usize,
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> Stacked<'a, T> {
    /// Matrix b as gemm takes an operand: (values from its first entry, column stride, row
    /// stride).
    fn matrix(&self, b: usize) -> (&'a [T], usize, usize) {
        (
            &self.values[self.offset + b * self.batch..],
            self.cols,
            self.rows,
        )
    }

    /// Matrix b transposed.
    fn matrix_t(&self, b: usize) -> (&'a [T], usize, usize) {
        (
            &self.values[self.offset + b * self.batch..],
            self.rows,
            self.cols,
        )
    }
}

/// relu(scale · h_b·w_b) for each of the `r` matrices of the stacks, into a fresh `[r, n, m]`
/// buffer: each product by gemm as Burn's flex matmul calls it (so the same values, bit for
/// bit), its scale and relu while it is still in cache; the stack in parallel.
///
/// # Shapes
/// - `h`: r matrices n×k, `w`: r matrices k×m; returns `[r, n, m]`
pub(crate) fn relu_matmul<T: Real>(
    [r, n, k, m]: [usize; 4],
    h: Stacked<'_, T>,
    w: Stacked<'_, T>,
    scale: T,
) -> Vec<T> {
    let mut y = Vec::with_capacity(r * n * m);
    y.spare_capacity_mut()[..r * n * m]
        .par_chunks_mut((n * m).max(1))
        .enumerate()
        .for_each(|(b, out)| {
            let out = gemm_fresh(n, m, k, out, h.matrix(b), w.matrix(b));
            scaled_relu(out, scale);
        });
    // SAFETY: `gemm_fresh` wrote every entry of every chunk, which together are the first
    // r·n·m entries of the capacity.
    #[allow(unsafe_code)]
    unsafe {
        y.set_len(r * n * m)
    };
    y
}

/// Gradients of [`relu_matmul`] given its output `y` and ∂y: (∂h `[r, n, k]` if `want_h`,
/// ∂w `[r, k, m]` if `want_w`), each the product Burn's matmul backward forms (∂h = g·w_bᵀ,
/// ∂w = h_bᵀ·g, for g = ∂y carried back through the relu and scale), bit for bit; per matrix
/// of the stack in parallel, g formed in cache beside its two products.
#[allow(clippy::too_many_arguments)]
pub(crate) fn relu_matmul_backward<T: Real>(
    [r, n, k, m]: [usize; 4],
    h: Stacked<'_, T>,
    w: Stacked<'_, T>,
    y: &[T],
    dy: &[T],
    scale: T,
    want_h: bool,
    want_w: bool,
) -> (Vec<T>, Vec<T>) {
    assert!(
        y.len() == r * n * m && dy.len() == y.len(),
        "relu matmul backward: sizes"
    );
    let mut dh = Vec::with_capacity(if want_h { r * n * k } else { 0 });
    let mut dw = Vec::with_capacity(if want_w { r * k * m } else { 0 });
    let (dh_parts, dw_parts) = (
        per_matrix(&mut dh, r, want_h.then_some(n * k)),
        per_matrix(&mut dw, r, want_w.then_some(k * m)),
    );
    dh_parts
        .into_par_iter()
        .zip(dw_parts)
        .enumerate()
        .for_each(|(b, (dh_b, dw_b))| {
            let mut g = dy[b * n * m..(b + 1) * n * m].to_vec();
            relu_scale_backward(&y[b * n * m..(b + 1) * n * m], &mut g, scale);
            if let Some(out) = dh_b {
                gemm_fresh(n, k, m, out, (&g, 1, m), w.matrix_t(b));
            }
            if let Some(out) = dw_b {
                gemm_fresh(k, m, n, out, h.matrix_t(b), (&g, 1, m));
            }
        });
    // SAFETY: `gemm_fresh` wrote every entry of every wanted chunk, which together are the
    // first r·len entries of that buffer's capacity.
    #[allow(unsafe_code)]
    unsafe {
        if want_h {
            dh.set_len(r * n * k);
        }
        if want_w {
            dw.set_len(r * k * m);
        }
    }
    (dh, dw)
}

/// The first r·len entries of `v`'s capacity as r chunks of `len`, or r `None`s.
fn per_matrix<T>(
    v: &mut Vec<T>,
    r: usize,
    len: Option<usize>,
) -> Vec<Option<&mut [std::mem::MaybeUninit<T>]>> {
    match len {
        Some(len) => v.spare_capacity_mut()[..r * len]
            .chunks_mut(len.max(1))
            .map(Some)
            .chain(std::iter::repeat_with(|| None))
            .take(r)
            .collect(),
        None => (0..r).map(|_| None).collect(),
    }
}

/// lhs·rhs into `dst` (row-major m×n), written without being read or zeroed first; the
/// operands as [`gemm`] takes them. Returns `dst`, now initialized.
fn gemm_fresh<'d, T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &'d mut [std::mem::MaybeUninit<T>],
    lhs: (&[T], usize, usize),
    rhs: (&[T], usize, usize),
) -> &'d mut [T] {
    let dst = &mut dst[..m * n];
    if k == 0 {
        // An empty sum: gemm would leave dst as it is.
        dst.fill(std::mem::MaybeUninit::new(T::ZERO));
    } else {
        check_operands(m, n, k, lhs, rhs);
        // SAFETY: every index gemm reads lies inside the operand slices (checked above), and
        // it writes each of dst's m·n entries once, reading none (alpha = 0, no read of dst).
        #[allow(unsafe_code)]
        unsafe {
            call_gemm(m, n, k, dst.as_mut_ptr().cast::<T>(), false, lhs, rhs);
        }
    }
    // SAFETY: every entry was written above; MaybeUninit<T> has T's layout.
    #[allow(unsafe_code)]
    unsafe {
        &mut *(dst as *mut [std::mem::MaybeUninit<T>] as *mut [T])
    }
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
    assert!(dst.len() >= m * n);
    check_operands(m, n, k, (lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs));
    // SAFETY: every index gemm reads lies inside the operand slices, as checked above, and it
    // writes m·n entries of dst, which holds at least that many.
    unsafe {
        call_gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            accumulate,
            (lhs, lhs_cs, lhs_rs),
            (rhs, rhs_cs, rhs_rs),
        )
    };
}

/// Panics unless every entry of the m×k `lhs` and the k×n `rhs` lies inside its slice.
fn check_operands<T>(
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[T], usize, usize),
    rhs: (&[T], usize, usize),
) {
    let last = |rows: usize, cols: usize, cs: usize, rs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(m * k == 0 || last(m, k, lhs.1, lhs.2) < lhs.0.len());
    assert!(k * n == 0 || last(k, n, rhs.1, rhs.2) < rhs.0.len());
}

/// gemm on one thread: dst = (accumulate ? dst : 0) + lhs·rhs, dst row-major m×n.
///
/// # Safety
/// The operands' entries lie inside their slices ([`check_operands`]) and `dst` points to
/// m·n writable entries (read only when `accumulate`).
#[allow(unsafe_code)]
unsafe fn call_gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    accumulate: bool,
    (lhs, lhs_cs, lhs_rs): (&[T], usize, usize),
    (rhs, rhs_cs, rhs_rs): (&[T], usize, usize),
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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

/// Calls `$f::<T, B, N>` on blocks of B channels from o0, for B = 32, 16, 4 and 1 in turn, each
/// while a block fits. A register tile is B channels (the vector lanes: two 512-bit vectors of
/// f32 at 32) by N broadcast values: 6 at 32 channels, 12 below, so that the accumulators and
/// the loads fit the 32 vector registers.
macro_rules! channel_blocks {
    ($f:ident, $channels:expr, |$o0:ident| ($($arg:expr),*)) => {{
        let channels: usize = $channels;
        let mut $o0 = 0;
        while $o0 + 32 <= channels {
            $f::<T, 32, 6>($($arg),*);
            $o0 += 32;
        }
        while $o0 + 16 <= channels {
            $f::<T, 16, 12>($($arg),*);
            $o0 += 16;
        }
        while $o0 + 4 <= channels {
            $f::<T, 4, 12>($($arg),*);
            $o0 += 4;
        }
        while $o0 < channels {
            $f::<T, 1, 12>($($arg),*);
            $o0 += 1;
        }
    }};
}

/// The one register kernel both correlations run on: for each base a, acc[a][i] = Σ_r
/// src[bases[a] + offsets[r]] · v[r, o0 + i], r in order. The forward and input-gradient
/// correlation take the outputs as bases, the taps' shifts as offsets and the weight as v; the
/// weight gradient takes the taps' shifts as bases, the outputs as offsets and ∂y as v.
/// Tiles of N bases, then single ones; `store` gets each tile's first base and its rows.
///
/// # Shapes
/// - `v`: `[offsets, channels]`
#[inline(always)]
fn tiles<T: Real, const B: usize, const N: usize>(
    src: &[T],
    offsets: &[usize],
    v: &[T],
    bases: &[usize],
    o0: usize,
    mut store: impl FnMut(usize, &[[T; B]]),
) {
    let mut a0 = 0;
    while a0 + N <= bases.len() {
        store(a0, &tile::<T, B, N>(src, offsets, v, &bases[a0..], o0));
        a0 += N;
    }
    for a0 in a0..bases.len() {
        store(a0, &tile::<T, B, 1>(src, offsets, v, &bases[a0..], o0));
    }
}

/// One register tile of [`tiles`]: bases[..A] × channels o0..o0 + B.
///
/// The reads are checked to lie inside the slices before the loop: a bounds check inside it
/// would keep the accumulators in memory instead of registers.
#[inline(always)]
#[allow(unsafe_code)]
fn tile<T: Real, const B: usize, const A: usize>(
    src: &[T],
    offsets: &[usize],
    v: &[T],
    bases: &[usize],
    o0: usize,
) -> [[T; B]; A] {
    let channels = v.len() / offsets.len();
    let at: [usize; A] = std::array::from_fn(|a| bases[a]);
    let last = offsets
        .iter()
        .max()
        .map_or(0, |&r| r + at.iter().max().unwrap_or(&0));
    assert!(o0 + B <= channels && (offsets.is_empty() || last < src.len()));
    let mut acc = [[T::ZERO; B]; A];
    for (r, &off) in offsets.iter().enumerate() {
        for (row, &base) in acc.iter_mut().zip(&at) {
            // SAFETY: base + off ≤ last < src.len(), and r·channels + o0 + i < (r + 1)·channels
            // ≤ v.len(), as asserted above (channels = v.len() / offsets.len()).
            let x = unsafe { *src.get_unchecked(base + off) };
            for (i, acc) in row.iter_mut().enumerate() {
                let vi = unsafe { *v.get_unchecked(r * channels + o0 + i) };
                *acc = x.mul_add(vi, *acc);
            }
        }
    }
    acc
}

/// out[p, o] = Σ_t wt[t, o] · src[outputs[p] + shifts[t]] for every listed output p.
///
/// # Shapes
/// - `wt`: `[taps, channels]`, `shifts`: `[taps]`, `outputs`: `[positions]`, `out`:
///   `[positions, channels]`
#[inline(always)]
fn correlate_generic<T: Real>(
    src: &[T],
    shifts: &[usize],
    wt: &[T],
    outputs: &[usize],
    out: &mut [T],
) {
    channel_blocks!(correlate_channels, wt.len() / shifts.len(), |o0| (
        src, shifts, wt, outputs, out, o0
    ));
}

multiversion!(correlate, correlate_generic,
    (src: &[T], shifts: &[usize], wt: &[T], outputs: &[usize], out: &mut [T]) -> ());

/// [`correlate`] for channels o0..o0 + B.
#[inline(always)]
fn correlate_channels<T: Real, const B: usize, const N: usize>(
    src: &[T],
    shifts: &[usize],
    wt: &[T],
    outputs: &[usize],
    out: &mut [T],
    o0: usize,
) {
    let channels = wt.len() / shifts.len();
    tiles::<T, B, N>(src, shifts, wt, outputs, o0, |p0, rows| {
        for (q, row) in rows.iter().enumerate() {
            out[(p0 + q) * channels + o0..][..B].copy_from_slice(row);
        }
    });
}

/// dw[o, t] = Σ_p dy[p, o] · src[outputs[p] + shifts[t]] over the listed outputs p, added to
/// `dw` when `accumulate`.
///
/// # Shapes
/// - `dy`: `[positions, channels]`, `shifts`: `[taps]`, `outputs`: `[positions]`, `dw`:
///   `[channels, taps]`
#[inline(always)]
fn weight_correlate_generic<T: Real>(
    src: &[T],
    shifts: &[usize],
    outputs: &[usize],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
) {
    channel_blocks!(weight_channels, dw.len() / shifts.len(), |o0| (
        src, shifts, outputs, dy, dw, accumulate, o0
    ));
}

multiversion!(weight_correlate, weight_correlate_generic,
    (src: &[T], shifts: &[usize], outputs: &[usize], dy: &[T], dw: &mut [T], accumulate: bool)
        -> ());

/// [`weight_correlate`] for channels o0..o0 + B.
#[inline(always)]
fn weight_channels<T: Real, const B: usize, const N: usize>(
    src: &[T],
    shifts: &[usize],
    outputs: &[usize],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    o0: usize,
) {
    let taps = shifts.len();
    tiles::<T, B, N>(src, outputs, dy, shifts, o0, |t0, rows| {
        for (u, row) in rows.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                let d = &mut dw[(o0 + i) * taps + t0 + u];
                *d = if accumulate { *d + v } else { v };
            }
        }
    });
}

/// The weight transposed to `[taps, o]`, and (`flip`) with the kernel turned by 180° and the
/// channel roles swapped: `[(o·k + ki)·k + kj, c] = weight[o, c, k−1−ki, k−1−kj]`, the kernel
/// of the input gradient's correlation.
///
/// # Shapes
/// - `weight`: `[o, c, k, k]`
fn taps_major<T: Real>(g: &ConvGeometry, weight: &[T], flip: bool) -> Vec<T> {
    let (o, c, kk) = (g.o, g.c, g.k * g.k);
    let mut out = vec![T::ZERO; weight.len()];
    for oc in 0..o {
        for ci in 0..c {
            for t in 0..kk {
                let v = weight[(oc * c + ci) * kk + t];
                if flip {
                    out[(oc * kk + kk - 1 - t) * c + ci] = v;
                } else {
                    out[(ci * kk + t) * o + oc] = v;
                }
            }
        }
    }
    out
}

/// y = conv(x, weight) + bias, samples in parallel.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `weight`: `[o, c, k, k]`, `bias`: `[o]`; returns `[b, o, ho, wo]`
pub(crate) fn conv2d<T: Real>(g: &ConvGeometry, x: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
    let forward = Correlation::new(g.forward_grid());
    let wt = taps_major(g, weight, false);
    let batch = x.len() / g.input_len();
    let mut y = vec![T::ZERO; batch * g.output_len()];
    y.par_chunks_mut(g.output_len())
        .zip(x.par_chunks(g.input_len()))
        .for_each_init(
            || forward.scratch(g.o),
            |scratch, (yb, xb)| {
                forward.apply(xb, &wt, scratch, yb);
                for (row, &b) in yb.chunks_exact_mut(forward.outputs.len()).zip(bias) {
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
/// `wanted`. ∂x is the correlation of ∂y, padded by k − 1 − pad, with the flipped kernel.
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
    let (taps, l, o) = (g.taps(), g.out_h() * g.out_w(), g.o);
    let terms = Correlation::new(g.forward_grid());
    let back = Correlation::new(g.input_grad_grid());
    let back_wt = taps_major(g, weight, true);
    let mut dx = vec![T::ZERO; x.len()];
    // Each chunk of CHUNK samples sums its own weight and bias gradients...
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(CHUNK * g.input_len())
        .zip(x.par_chunks(CHUNK * g.input_len()))
        .zip(dy.par_chunks(CHUNK * g.output_len()))
        .map(|((dxc, xc), dyc)| {
            let (mut dw, mut db) = (vec![T::ZERO; o * taps], vec![T::ZERO; o]);
            let mut scratch = terms.scratch(o);
            let mut back_scratch = back.scratch(g.c);
            for ((dxb, xb), dyb) in dxc
                .chunks_exact_mut(g.input_len())
                .zip(xc.chunks_exact(g.input_len()))
                .zip(dyc.chunks_exact(g.output_len()))
            {
                if wanted.params {
                    terms.add(xb, dyb, &mut scratch, &mut dw, true);
                    for (d, row) in db.iter_mut().zip(dyb.chunks_exact(l)) {
                        *d = row.iter().fold(*d, |s, &v| s + v);
                    }
                }
                if wanted.input {
                    back.apply(dyb, &back_wt, &mut back_scratch, dxb);
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

/// Each sample's weight gradient of [`conv2d`], given ∂L/∂y: the terms [`conv2d_backward`]
/// sums, each written to its own slot (DP-SGD clips them one by one). Samples in parallel.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `dy`: `[b, o, ho, wo]`; returns `[b, o, c·k·k]`
pub(crate) fn conv2d_per_sample_weight<T: Real>(g: &ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let terms = Correlation::new(g.forward_grid());
    let per_sample = g.o * g.taps();
    let batch = x.len() / g.input_len();
    let mut dw = vec![T::ZERO; batch * per_sample];
    dw.par_chunks_mut(per_sample)
        .zip(x.par_chunks(g.input_len()))
        .zip(dy.par_chunks(g.output_len()))
        .for_each_init(
            || terms.scratch(g.o),
            |scratch, ((dwb, xb), dyb)| terms.add(xb, dyb, scratch, dwb, false),
        );
    dw
}

/// One correlation's planes, its taps' shifts and its outputs, derived once per call of the op.
struct Correlation {
    grid: WideGrid,
    shifts: Vec<usize>,
    outputs: Vec<usize>,
}

impl Correlation {
    fn new(grid: WideGrid) -> Self {
        Self {
            grid,
            shifts: grid.shifts(),
            outputs: grid.outputs(),
        }
    }

    /// Scratch for one thread: the padded planes, and `channels` values per output (the
    /// correlation's result, or ∂y transposed for a weight term).
    fn scratch<T: Real>(&self, channels: usize) -> (Vec<T>, Vec<T>) {
        let src = vec![T::ZERO; self.grid.src_len()];
        (src, vec![T::ZERO; self.outputs.len() * channels])
    }

    /// One sample's correlation with `wt`, written channel-major to `dst`.
    ///
    /// # Shapes
    /// - `x`: `[c, h, w]`, `wt`: `[c·k·k, channels]`, `dst`: `[channels, out_h, out_w]`
    fn apply<T: Real>(&self, x: &[T], wt: &[T], (src, out): &mut (Vec<T>, Vec<T>), dst: &mut [T]) {
        self.grid.fill(x, src);
        correlate(src, &self.shifts, wt, &self.outputs, out);
        transpose(out, self.outputs.len(), dst);
    }

    /// Sample b's term Σ_p dy_b[o, p] · x_b[p + shift(t)], added to `dw` or (not
    /// `accumulate`) written over it.
    ///
    /// # Shapes
    /// - `x`: `[c, h, w]`, `dy`: `[o, ho, wo]`, `dw`: `[o, c·k·k]`
    fn add<T: Real>(
        &self,
        x: &[T],
        dy: &[T],
        (src, dy_t): &mut (Vec<T>, Vec<T>),
        dw: &mut [T],
        accumulate: bool,
    ) {
        self.grid.fill(x, src);
        let o = dy.len() / self.outputs.len();
        transpose(dy, o, dy_t);
        weight_correlate(src, &self.shifts, &self.outputs, dy_t, dw, accumulate);
    }
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
