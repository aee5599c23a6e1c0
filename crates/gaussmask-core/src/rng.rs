//! Seeded, portable random streams.
//!
//! Every random quantity of a run (initial weights, masks, data) comes from a [`Stream`] keyed by
//! a seed and a purpose tag, never from a backend's global generator. That is what makes a
//! replica's trajectory independent of which other replicas share its batch, and what makes the
//! same config give the same numbers on every backend.

/// Purpose tags: two streams with the same seed and different tags are unrelated.
pub mod tag {
    /// First-layer weights and output signs.
    pub const INIT: u64 = 0x1A17_0000_0000_0001;
    /// Input masks.
    pub const MASK: u64 = 0x3A5C_0000_0000_0002;
    /// Synthetic inputs.
    pub const DATA: u64 = 0xDA7A_0000_0000_0003;
    /// Teacher network and label noise.
    pub const TEACHER: u64 = 0x7EAC_0000_0000_0004;
    /// Minibatch order.
    pub const BATCH: u64 = 0xBA7C_0000_0000_0005;
    /// Dataset splits.
    pub const SPLIT: u64 = 0x5B17_0000_0000_0006;
    /// Dropout masks.
    pub const DROPOUT: u64 = 0xD209_0000_0000_0007;
    /// DP-SGD gradient noise.
    pub const PRIVACY: u64 = 0xD95D_0000_0000_0008;
    /// The seeds of a federated run's clients (per κ, round and client).
    pub const CLIENT: u64 = 0xC11E_0000_0000_0009;
    /// The seeds of Monte Carlo mask replicas.
    pub const MONTE_CARLO: u64 = 0x3C3C_0000_0000_000A;
    /// DP-SGD's Poisson-sampled batches (per step).
    pub const POISSON: u64 = 0xB055_0000_0000_000B;
}

/// A seed for the unit at `path` (e.g. `[κ index, round, client]`) under `seed` and `tag`:
/// the stream's sub-streams along `path`, so two paths never share a seed by construction of
/// the digits (as `seed · 1000 + i` would for i ≥ 1000).
pub fn derive_seed(seed: u64, tag: u64, path: &[u64]) -> u64 {
    let mut stream = Stream::new(seed, tag);
    for &i in path {
        stream = stream.substream(i);
    }
    stream.next_u64()
}

/// xoshiro256++ generator with SplitMix64 seeding: fast, small state, identical on every platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    s: [u64; 4],
    /// A second normal from the last polar draw, kept so no draw is wasted.
    spare: Option<u64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Stream {
    /// The stream for `seed` and purpose `tag` (see [`tag`]).
    pub fn new(seed: u64, tag: u64) -> Self {
        let mut sm = seed ^ tag.rotate_left(17);
        // Burn a few outputs so that nearby seeds decorrelate before the first draw.
        for _ in 0..4 {
            splitmix64(&mut sm);
        }
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { s, spare: None }
    }

    /// A sub-stream: the same generator family keyed by `(self's seed material, index)`.
    pub fn substream(&self, index: u64) -> Self {
        let mut sm =
            self.s[0] ^ self.s[2].rotate_left(29) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Self {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
            spare: None,
        }
    }

    /// The generator's whole state, for checkpoints: four state words and the kept normal
    /// (its bits, or 0 with flag 0).
    pub fn state(&self) -> [u64; 6] {
        let (flag, bits) = match self.spare {
            Some(b) => (1, b),
            None => (0, 0),
        };
        [self.s[0], self.s[1], self.s[2], self.s[3], flag, bits]
    }

    /// The stream whose [`Stream::state`] is `state`: it continues exactly where that one was.
    pub fn from_state(state: [u64; 6]) -> Self {
        Self {
            s: [state[0], state[1], state[2], state[3]],
            spare: (state[4] != 0).then_some(state[5]),
        }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform on (0, 1): never exactly 0, for logarithms.
    #[inline]
    pub fn uniform_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal draw (Marsaglia's polar method; the pair's second value is kept).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        if let Some(bits) = self.spare.take() {
            return f64::from_bits(bits);
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some((v * f).to_bits());
                return u * f;
            }
        }
    }

    /// Standard normal draw by the ziggurat method (Marsaglia & Tsang 2000, Doornik's 128-layer
    /// variant): one 64-bit draw per normal about 99% of the time, several times faster than
    /// [`Stream::normal`]. The masks use it; weights and data keep the polar draws.
    #[inline]
    pub fn normal_ziggurat(&mut self) -> f64 {
        let bits = self.next_u64();
        ziggurat_rectangle(ziggurat(), bits).unwrap_or_else(|| self.ziggurat_outside(bits))
    }

    /// Fills `out` with standard normals by the ziggurat method.
    pub fn fill_normal_ziggurat(&mut self, out: &mut [f64]) {
        for o in out {
            *o = self.normal_ziggurat();
        }
    }

    /// The draw for bits that fell outside their layer's rectangle: the tail beyond the base
    /// layer, or the wedge under the density (else a fresh draw).
    #[cold]
    #[inline(never)]
    fn ziggurat_outside(&mut self, mut bits: u64) -> f64 {
        let zig = ziggurat();
        loop {
            let (layer, u) = ziggurat_split(bits);
            if let Some(z) = ziggurat_rectangle(zig, bits) {
                return z;
            }
            if layer == 0 {
                return zig_tail(self, u < 0.0);
            }
            let (x_layer, x_next) = (zig.x[layer], zig.x[layer + 1]);
            let x = u * x_layer;
            let f0 = (-0.5 * (x_layer * x_layer - x * x)).exp();
            let f1 = (-0.5 * (x_next * x_next - x * x)).exp();
            if f1 + self.uniform() * (f0 - f1) < 1.0 {
                return x;
            }
            bits = self.next_u64();
        }
    }

    /// Fills `out` with standard normal draws.
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        for o in out {
            *o = self.normal();
        }
    }

    /// Uniformly random sign.
    #[inline]
    pub fn sign(&mut self) -> f64 {
        if self.next_u64() >> 63 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// Uniform integer in `0..bound` (bound ≥ 1), by Lemire's multiply-shift.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// In-place Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Right edge of the base layer of the 128-layer normal ziggurat, and the common layer area.
const ZIG_R: f64 = 3.442_619_855_899;
const ZIG_AREA: f64 = 9.912_563_035_262_17e-3;
const ZIG_LAYERS: usize = 128;

/// Layer edges x_i (x_0 is the base layer's pseudo-width, x_128 = 0) and x_{i+1}/x_i.
struct Ziggurat {
    x: [f64; ZIG_LAYERS + 1],
    ratio: [f64; ZIG_LAYERS],
}

fn ziggurat() -> &'static Ziggurat {
    static TABLE: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let density = |x: f64| (-0.5 * x * x).exp();
        let mut x = [0.0; ZIG_LAYERS + 1];
        x[0] = ZIG_AREA / density(ZIG_R);
        x[1] = ZIG_R;
        for i in 2..ZIG_LAYERS {
            // Equal areas: x_i (f(x_{i+1}) − f(x_i)) = area.
            x[i] = (-2.0 * (ZIG_AREA / x[i - 1] + density(x[i - 1])).ln()).sqrt();
        }
        x[ZIG_LAYERS] = 0.0;
        let mut ratio = [0.0; ZIG_LAYERS];
        for i in 0..ZIG_LAYERS {
            ratio[i] = x[i + 1] / x[i];
        }
        Ziggurat { x, ratio }
    })
}

/// The layer (low 7 bits) and a signed uniform on [−1, 1) (top 53 bits) of one draw; the
/// conversion is signed, one instruction on x86-64 where the unsigned one is a sequence.
#[inline(always)]
fn ziggurat_split(bits: u64) -> (usize, f64) {
    let u = ((bits >> 11) as i64 - (1 << 52)) as f64 * (1.0 / (1u64 << 52) as f64);
    ((bits & 0x7F) as usize, u)
}

/// The draw when `bits` land inside their layer's rectangle (about 99% of draws).
#[inline(always)]
fn ziggurat_rectangle(zig: &Ziggurat, bits: u64) -> Option<f64> {
    let (layer, u) = ziggurat_split(bits);
    (u.abs() < zig.ratio[layer]).then(|| u * zig.x[layer])
}

/// A draw from the normal tail beyond `ZIG_R` (Marsaglia's exponential rejection).
#[cold]
fn zig_tail(stream: &mut Stream, negative: bool) -> f64 {
    loop {
        let x = stream.uniform_open().ln() / ZIG_R;
        let y = stream.uniform_open().ln();
        if -2.0 * y >= x * x {
            return if negative { x - ZIG_R } else { ZIG_R - x };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_where_a_hand_mix_collides() {
        // seed · 1000 + i gives seed 0, replica 1000 the seed of seed 1, replica 0.
        assert_ne!(
            derive_seed(0, tag::MONTE_CARLO, &[1000]),
            derive_seed(1, tag::MONTE_CARLO, &[0])
        );
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            for a in 0..20 {
                for b in 0..20 {
                    assert!(seen.insert(derive_seed(seed, tag::CLIENT, &[a, b])));
                }
            }
        }
        assert_eq!(
            derive_seed(7, tag::CLIENT, &[1, 2]),
            derive_seed(7, tag::CLIENT, &[1, 2])
        );
        assert_ne!(
            derive_seed(7, tag::CLIENT, &[1, 2]),
            derive_seed(7, tag::CLIENT, &[2, 1])
        );
    }

    #[test]
    fn a_stream_restored_from_its_state_continues_identically() {
        let mut a = Stream::new(3, tag::BATCH);
        a.normal(); // leaves a kept normal behind
        let mut b = Stream::from_state(a.state());
        let xa: Vec<f64> = (0..5).map(|_| a.normal()).collect();
        let xb: Vec<f64> = (0..5).map(|_| b.normal()).collect();
        assert_eq!(xa, xb);
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn streams_are_reproducible_and_tag_separated() {
        let mut a = Stream::new(7, tag::MASK);
        let mut b = Stream::new(7, tag::MASK);
        let mut c = Stream::new(7, tag::INIT);
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn normal_moments_within_standard_errors() {
        // Mean 0 (se 1/√N), variance 1 (se √(2/N)) and E z⁴ = 3 (se √(96/N)) of N(0, 1).
        let n = 400_000usize;
        let mut s = Stream::new(1, tag::MASK);
        let (mut m1, mut m2, mut m4) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let z = s.normal();
            m1 += z;
            m2 += z * z;
            m4 += z * z * z * z;
        }
        let nf = n as f64;
        assert!((m1 / nf).abs() < 4.0 / nf.sqrt());
        assert!((m2 / nf - 1.0).abs() < 4.0 * (2.0 / nf).sqrt());
        assert!((m4 / nf - 3.0).abs() < 4.0 * (96.0 / nf).sqrt());
    }

    #[test]
    fn ziggurat_moments_and_tails_within_standard_errors() {
        // Moments as above, plus the tail masses P(|z| > 1), P(|z| > 3) and P(z > 3.5) (beyond
        // the base layer's edge, drawn by the tail routine), each within 5 binomial SE.
        let n = 2_000_000usize;
        let mut draws = vec![0.0; n];
        Stream::new(2, tag::MASK).fill_normal_ziggurat(&mut draws);
        let (mut m1, mut m2, mut m4) = (0.0, 0.0, 0.0);
        let (mut t1, mut t3, mut t35) = (0usize, 0usize, 0usize);
        for &z in &draws {
            m1 += z;
            m2 += z * z;
            m4 += z * z * z * z;
            t1 += (z.abs() > 1.0) as usize;
            t3 += (z.abs() > 3.0) as usize;
            t35 += (z > 3.5) as usize;
        }
        let nf = n as f64;
        assert!((m1 / nf).abs() < 5.0 / nf.sqrt());
        assert!((m2 / nf - 1.0).abs() < 5.0 * (2.0 / nf).sqrt());
        assert!((m4 / nf - 3.0).abs() < 5.0 * (96.0 / nf).sqrt());
        // 2(1 − Φ(t)) from erfc, and one-sided 1 − Φ(3.5).
        for (count, p) in [
            (t1, libm::erfc(1.0 / std::f64::consts::SQRT_2)),
            (t3, libm::erfc(3.0 / std::f64::consts::SQRT_2)),
            (t35, 0.5 * libm::erfc(3.5 / std::f64::consts::SQRT_2)),
        ] {
            let se = (p * (1.0 - p) / nf).sqrt();
            assert!(
                (count as f64 / nf - p).abs() < 5.0 * se,
                "tail mass {} vs {p}",
                count as f64 / nf
            );
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut s = Stream::new(3, tag::BATCH);
        let mut v: Vec<usize> = (0..100).collect();
        s.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
