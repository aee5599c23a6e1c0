//! A mask's host streams, saved with the model's record.

use std::sync::{Mutex, MutexGuard};

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
    Param, ParamId,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::{Stream, tag};

/// The state of a mask's host streams: what a checkpoint saves so that a resumed run draws the
/// same masks. See [`InputMask::noise_state`](super::InputMask::noise_state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskState {
    /// Per replica, the call stream ([`Stream::state`]).
    pub streams: Vec<[u64; 6]>,
    /// Per replica, the root of the fixed-per-sample masks.
    pub roots: Vec<[u64; 6]>,
}

/// Per-replica host streams of a mask, behind a lock so that [`InputMask::forward`](super::InputMask::forward) can take
/// `&self` like every Burn layer. A clone is an independent copy that continues identically.
///
/// Burn sees the state as an integer parameter (`streams`: every 64-bit word as four 16-bit
/// values, which fit every backend's integer type), so the record of any model holding the mask
/// ([`Module::into_record`](burn::module::Module::into_record), [`Module::load_record`](burn::module::Module::load_record)) saves and restores the streams with the
/// weights: a resumed run draws the masks an uninterrupted one would.
pub(super) struct MaskStreams {
    state: Mutex<MaskState>,
    id: ParamId,
    /// Where the recorded parameter lives: the device of the last masked input (the default
    /// device before any), so recording never touches another backend.
    device: Mutex<Option<Device>>,
}

impl MaskStreams {
    pub(super) fn new(seeds: &[u64]) -> Self {
        let streams: Vec<Stream> = seeds.iter().map(|&s| Stream::new(s, tag::MASK)).collect();
        let roots = streams
            .iter()
            .map(|s| s.substream(u64::MAX).state())
            .collect();
        let streams = streams.iter().map(Stream::state).collect();
        Self {
            state: Mutex::new(MaskState { streams, roots }),
            id: ParamId::new(),
            device: Mutex::new(None),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, MaskState> {
        // A panic elsewhere cannot leave a half-written state: every update is one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as the parameter Burn records.
    pub(super) fn param(&self) -> Param<Tensor<1, Int>> {
        let state = self.lock();
        let chunks: Vec<i64> = state
            .streams
            .iter()
            .chain(&state.roots)
            .flatten()
            .flat_map(|&w| (0..4).map(move |k| ((w >> (16 * k)) & 0xFFFF) as i64))
            .collect();
        let len = chunks.len();
        let device = self.device().unwrap_or_default();
        let value = Tensor::from_data(TensorData::new(chunks, [len]), &device);
        Param::initialized(self.id, value)
    }

    pub(super) fn device(&self) -> Option<Device> {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_device(&self, device: &Device) {
        let mut slot = self.device.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref() != Some(device) {
            *slot = Some(device.clone());
        }
    }

    /// Takes the state back from a (possibly replaced) recorded parameter.
    pub(super) fn set_from(&mut self, param: Param<Tensor<1, Int>>) {
        self.id = param.id;
        let chunks: Vec<i64> = param.val().into_data().iter::<i64>().collect();
        let mut state = self.lock();
        let r = state.streams.len();
        if chunks.len() != r * 12 * 4 {
            return; // not a mask state of this shape: keep the current one
        }
        let words: Vec<u64> = chunks
            .chunks_exact(4)
            .map(|c| (0..4).fold(0u64, |w, k| w | ((c[k] as u64 & 0xFFFF) << (16 * k))))
            .collect();
        for (i, state6) in words.chunks_exact(6).enumerate() {
            let s: [u64; 6] = state6.try_into().expect("six words");
            if i < r {
                state.streams[i] = s;
            } else {
                state.roots[i - r] = s;
            }
        }
    }
}

impl Clone for MaskStreams {
    fn clone(&self) -> Self {
        Self {
            state: Mutex::new(self.lock().clone()),
            id: self.id,
            device: Mutex::new(self.device()),
        }
    }
}

impl std::fmt::Debug for MaskStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskStreams({} replicas)", self.lock().streams.len())
    }
}

impl Module for MaskStreams {
    fn collect_devices(&self, devices: Devices) -> Devices {
        // Host state: it lives on no device of the model.
        devices
    }

    fn fork(self, device: &Device) -> Self {
        self.set_device(device);
        self
    }

    fn to_device(self, device: &Device) -> Self {
        self.set_device(device);
        self
    }

    fn train(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_int(&self.param());
    }

    fn map<M: ModuleMapper>(mut self, mapper: &mut M) -> Self {
        let param = mapper.map_int(self.param());
        self.set_from(param);
        self
    }
}

impl ModuleDisplayDefault for MaskStreams {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .add_formatted(&format!("{} host streams", self.lock().streams.len()))
            .optional()
    }
}

impl ModuleDisplay for MaskStreams {}
