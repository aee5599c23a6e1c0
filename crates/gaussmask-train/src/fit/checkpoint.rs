//! The checkpoint of a [`Fit`]: a small header of ours, then Burn's records of the model,
//! the optimizer and the schedule.

use burn::optim::OptimizerRecord;
use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::Stream;
use serde::{Deserialize, Serialize};

use super::{Fit, FitConfig, Trainable};
use crate::StateError;

/// The small part of a checkpoint that is ours (the records are Burn's).
#[derive(Serialize, Deserialize)]
struct FitHeader {
    step: usize,
    order: Vec<usize>,
    cursor: usize,
    stream: [u64; 6],
    device_seeds: [u64; 6],
    privacy: [u64; 6],
    /// Per replica on rows of its own, its order, cursor and stream (empty otherwise).
    #[serde(default)]
    own: Vec<(Vec<usize>, usize, [u64; 6])>,
    /// Lengths of the model, optimizer and schedule records that follow.
    records: [usize; 3],
}

/// Leads every checkpoint of [`Fit::checkpoint`].
const FIT_MAGIC: &[u8] = b"GMFIT2\n";

impl<'a, M: Trainable> Fit<'a, M> {
    /// The run's state as bytes: continue it with [`Fit::resume`].
    pub fn checkpoint(&self) -> Result<Vec<u8>, StateError> {
        // Recorded through `valid()`, which first folds in the last update of running
        // statistics (burn::nn::BatchNorm's; a training-mode record holds the one before).
        let records = [
            self.model().valid().into_record().into_bytes(),
            self.optimizer.to_record().into_bytes(),
            self.scheduler.to_record().into_bytes(),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StateError::Encode(e.to_string()))?;
        let (order, cursor, stream) = self.batches.state();
        let header = FitHeader {
            step: self.step,
            order,
            cursor,
            stream,
            device_seeds: self.device_seeds.state(),
            privacy: self.privacy.state(),
            own: self.own.iter().map(|o| o.batches.state()).collect(),
            records: [records[0].len(), records[1].len(), records[2].len()],
        };
        let mut out = FIT_MAGIC.to_vec();
        let header = serde_json::to_vec(&header).map_err(|e| StateError::Encode(e.to_string()))?;
        out.extend((header.len() as u64).to_le_bytes());
        out.extend(header);
        for r in &records {
            out.extend_from_slice(r);
        }
        Ok(out)
    }

    /// Continues the run saved in `bytes`: `model` is a model of the same shape (its values are
    /// replaced), `data`, `config` and `device` those of the saved run.
    ///
    /// # Errors
    /// [`StateError::Mismatch`] when the bytes are not a checkpoint of such a run,
    /// [`StateError::Train`] when `config` does not fit `model` and `data`.
    pub fn resume(
        model: M,
        bytes: &[u8],
        data: &'a Dataset,
        config: &FitConfig,
        device: &Device,
    ) -> Result<Self, StateError> {
        Self::new(model, data, config, device)
            .map_err(StateError::Train)?
            .restore(bytes)
    }

    /// This run, at step 0 and built as the saved one was (model shape, data, config, replica
    /// rows), continued from the state saved in `bytes`.
    ///
    /// # Errors
    /// [`StateError::Mismatch`] when the bytes are not a checkpoint of such a run.
    pub fn restore(self, bytes: &[u8]) -> Result<Self, StateError> {
        let bad = |why: &str| {
            StateError::Mismatch(format!("not a training checkpoint of this run: {why}"))
        };
        let rest = bytes
            .strip_prefix(FIT_MAGIC)
            .ok_or_else(|| bad("no header"))?;
        let (len, rest) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (header, mut rest) = rest.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
        let header: FitHeader = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
        let mut parts = Vec::new();
        for n in header.records {
            let (part, tail) = rest.split_at_checked(n).ok_or_else(|| bad("truncated"))?;
            parts.push(Bytes::from_bytes_vec(part.to_vec()));
            rest = tail;
        }
        let own_rows = |o: &(Vec<usize>, usize, [u64; 6])| o.0.len();
        if !rest.is_empty()
            || header.step > self.config.steps
            || header.order.len() != self.data.n
            || header.own.len() != self.own.len()
            || header
                .own
                .iter()
                .zip(&self.own)
                .any(|(h, o)| own_rows(h) != o.rows.len())
        {
            return Err(bad("its length, step or rows differ"));
        }
        let mut run = self;
        let mut parts = parts.into_iter();
        let mut next = || parts.next().expect("three records");
        let model_record = ModuleRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        let model = run.model.take().expect("fresh run");
        run.model = Some(
            model
                .try_load_record(model_record)
                .map_err(|e| bad(&e.to_string()))?,
        );
        let optimizer = OptimizerRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        run.optimizer = run.optimizer.load_record(optimizer);
        let scheduler = LrSchedulerRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        run.scheduler = run.scheduler.load_record(scheduler);
        run.batches
            .set_state(header.order, header.cursor, header.stream);
        for (o, (order, cursor, stream)) in run.own.iter_mut().zip(header.own) {
            o.batches.set_state(order, cursor, stream);
        }
        run.device_seeds = Stream::from_state(header.device_seeds);
        run.privacy = Stream::from_state(header.privacy);
        run.step = header.step;
        Ok(run)
    }
}
