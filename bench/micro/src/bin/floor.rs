//! Measures what bounds the trajectories step on this machine: matmul throughput (gemm, f32, at
//! a large square size and at the step's own shapes) and Gaussian draw throughput, and prints
//! them as JSON for `bench/run`'s compute-floor derivation.
#![allow(unsafe_code)] // the gemm calls, with their bounds checked

use std::time::Instant;

use gaussmask_nn::rng::{Stream, tag};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

/// Seconds per call of `f`, the median of `reps` timings of `inner` calls each.
fn time(reps: usize, inner: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..inner {
                f();
            }
            start.elapsed().as_secs_f64() / inner as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// out[n×m] = a[n×k] · b[k×m], row-major, on `threads` threads.
fn matmul(n: usize, m: usize, k: usize, a: &[f32], b: &[f32], out: &mut [f32], threads: usize) {
    assert!(a.len() >= n * k && b.len() >= k * m && out.len() >= n * m);
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: lengths checked above; row-major strides inside them.
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            out.as_mut_ptr(),
            1,
            m as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            m as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// FLOP/s of an n×k by k×m matmul.
fn matmul_rate(n: usize, m: usize, k: usize, threads: usize, inner: usize) -> f64 {
    let a = vec![0.5f32; n * k];
    let b = vec![0.25f32; k * m];
    let mut out = vec![0f32; n * m];
    let t = time(7, inner, || matmul(n, m, k, &a, &b, &mut out, threads));
    2.0 * (n * m * k) as f64 / t
}

fn main() {
    let threads = rayon::current_num_threads();
    let mut stream = Stream::new(1, tag::MASK);
    let mut buf = vec![0.0f64; 1 << 16];
    let zig = time(7, 20, || {
        for v in buf.iter_mut() {
            *v = stream.normal_ziggurat();
        }
    }) / buf.len() as f64;
    let mut bits = vec![0u64; 1 << 16];
    let raw = time(7, 20, || {
        for v in bits.iter_mut() {
            *v = stream.next_u64();
        }
    }) / bits.len() as f64;
    let polar = time(7, 20, || {
        for v in buf.iter_mut() {
            *v = stream.normal();
        }
    }) / buf.len() as f64;
    let report = serde_json::json!({
        "threads": threads,
        "matmul_f32_flops_1024_1thread": matmul_rate(1024, 1024, 1024, 1, 3),
        "matmul_f32_flops_1024_all_threads": matmul_rate(1024, 1024, 1024, threads, 3),
        "matmul_f32_flops_500x20x100_1thread": matmul_rate(500, 100, 20, 1, 200),
        "matmul_f32_flops_100x500x20_1thread": matmul_rate(100, 20, 500, 1, 200),
        "normal_ziggurat_seconds_per_draw_1thread": zig,
        "xoshiro_seconds_per_u64_1thread": raw,
        "normal_polar_seconds_per_draw_1thread": polar,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
