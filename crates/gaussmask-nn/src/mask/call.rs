//! One call's host masks, drawn block by block.

use crate::rng::Stream;

use super::{MaskConfig, MaskResample};

/// Rows per block of a mask call. Each block draws from its own sub-stream of the call, so
/// blocks can be drawn in parallel and the masks do not depend on how the rows are split.
pub const MASK_BLOCK_ROWS: usize = 32;

/// The host masks of one call (one step), drawn block by block: see [`InputMask::begin`](super::InputMask::begin).
pub struct MaskCall {
    pub(super) config: MaskConfig,
    pub(super) kappa: Vec<f64>,
    /// Per replica: the call's stream, or `None` where the mask is the identity.
    pub(super) calls: Vec<Option<Stream>>,
    pub(super) roots: Vec<Stream>,
}

impl MaskCall {
    /// Whether replica `r`'s mask is the identity in this call (κ = 0 or evaluation mode).
    pub fn is_identity(&self, r: usize) -> bool {
        self.calls[r].is_none()
    }

    /// Writes the masks of block `block` of the call (call rows `block·MASK_BLOCK_ROWS ..`),
    /// whose dataset indices are `rows`, for replica `r`.
    ///
    /// # Shapes
    /// - `rows`: at most [`MASK_BLOCK_ROWS`] indices; `out`: `rows.len() × d` values
    pub fn fill_block(&self, r: usize, block: usize, rows: &[usize], d: usize, out: &mut [f64]) {
        debug_assert_eq!(out.len(), rows.len() * d);
        let Some(call) = &self.calls[r] else {
            out.fill(1.0);
            return;
        };
        let (config, kappa) = (&self.config, self.kappa[r]);
        match config.resample {
            MaskResample::Fresh => {
                config.fill(kappa, &mut call.substream(block as u64), out);
            }
            MaskResample::FixedPerSample => {
                for (row, &i) in out.chunks_mut(d).zip(rows) {
                    config.fill(kappa, &mut self.roots[r].substream(i as u64), row);
                }
            }
            MaskResample::SharedAcrossBatch => {
                // Every block redraws the call's one shared mask from the same sub-stream.
                let mut shared = vec![0.0; d];
                config.fill(kappa, &mut call.substream(u64::MAX), &mut shared);
                for row in out.chunks_mut(d) {
                    row.copy_from_slice(&shared);
                }
            }
        }
    }

    /// Every replica's masks for the samples `rows`.
    ///
    /// # Shapes
    /// Returns `R × rows.len() × d` values, replica-major then row-major.
    pub fn fill(&self, rows: &[usize], d: usize) -> Vec<f64> {
        self.fill_each(|_| rows, rows.len(), d)
    }

    /// Every replica's masks, replica r's for its own n samples `rows(r)`.
    ///
    /// # Shapes
    /// Returns `R × n × d` values, replica-major then row-major.
    pub fn fill_each<'r>(
        &self,
        rows: impl Fn(usize) -> &'r [usize],
        n: usize,
        d: usize,
    ) -> Vec<f64> {
        let mut out = vec![1.0; self.kappa.len() * n * d];
        for (r, chunk) in out.chunks_mut(n * d).enumerate() {
            let rows = rows(r);
            assert_eq!(
                rows.len(),
                n,
                "mask: {} row indices for {n} samples",
                rows.len()
            );
            for (b, (block, block_rows)) in chunk
                .chunks_mut(MASK_BLOCK_ROWS * d)
                .zip(rows.chunks(MASK_BLOCK_ROWS))
                .enumerate()
            {
                self.fill_block(r, b, block_rows, d, block);
            }
        }
        out
    }
}
