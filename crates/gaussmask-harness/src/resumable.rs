//! The one checkpointed loop: a unit's work that advances a step at a time (a training run, a
//! federated round loop) is saved in the checkpoint folder every `--checkpoint-every` steps and
//! when SIGINT/SIGTERM arrives, and continues from its last save on `--resume`. [`Training`] is
//! a [`Fit`] seen that way.

use std::marker::PhantomData;

use gaussmask_train::fit::{Fit, Trainable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint;
use crate::error::HarnessError;
use crate::run::RunContext;

/// Work that advances one step at a time and can be saved between steps.
pub trait Resumable {
    /// What is saved beside the state and handed back on resume (e.g. the metrics logged so
    /// far).
    type Side: Serialize + DeserializeOwned;
    /// Steps done.
    fn step(&self) -> usize;
    /// Steps in all.
    fn steps(&self) -> usize;
    /// Takes one step; may record what it measured in `side`.
    ///
    /// # Errors
    /// A failed step (diverged, a tensor error).
    fn advance(&mut self, side: &mut Self::Side) -> Result<(), HarnessError>;
    /// The state to save after the current step.
    ///
    /// # Errors
    /// A state that cannot be encoded.
    fn state(&self) -> Result<Vec<u8>, HarnessError>;
    /// Whether every step is saved, whatever `--checkpoint-every` says (steps that are long
    /// on their own, such as federated rounds).
    fn save_every_step(&self) -> bool {
        false
    }
    /// What one step is called in messages.
    fn step_name(&self) -> &'static str {
        "step"
    }
}

impl RunContext {
    /// Runs the unit `key` to its last step. `begin(saved)` makes the work: from the state and
    /// side value saved under `key` when there are some, else fresh (with `first_side(&work)` as its side
    /// value). It is saved every `--checkpoint-every` steps (never after the last: the finished
    /// unit is kept instead) and stopped with the interrupted error (exit 130) at the first
    /// save after SIGINT/SIGTERM. `tick` is called once per step, the steps restored from the
    /// checkpoint included. `label` names the unit in messages.
    ///
    /// # Errors
    /// A saved state that does not fit (exit 2, naming the file), work that cannot start, a
    /// failed step, a checkpoint that cannot be written, or the interruption.
    pub fn run_resumable<W: Resumable>(
        &self,
        key: &str,
        label: &str,
        begin: impl FnOnce(Option<(&[u8], &W::Side)>) -> Result<W, String>,
        first_side: impl FnOnce(&W) -> W::Side,
        mut tick: impl FnMut(),
    ) -> Result<(W, W::Side), HarnessError> {
        let (mut work, mut side) = match self.checkpoints.load_state::<W::Side>(key)? {
            Some((bytes, side)) => {
                let work = begin(Some((&bytes, &side))).map_err(|e| {
                    let file = self.checkpoints.dir().join(format!("{key}.state"));
                    HarnessError::input(format!("{}: {e}", file.display()))
                })?;
                (work, side)
            }
            None => {
                let work = begin(None).map_err(|e| HarnessError::run(format!("{label}: {e}")))?;
                let side = first_side(&work);
                (work, side)
            }
        };
        for _ in 0..work.step() {
            tick();
        }
        while work.step() < work.steps() {
            work.advance(&mut side)?;
            tick();
            let step = work.step();
            let due = work.save_every_step() || self.checkpoints.due(step);
            if due && step < work.steps() {
                self.checkpoints.save_state(key, &work.state()?, &side)?;
                if checkpoint::interrupted() {
                    return Err(
                        self.interrupted_error(&format!("{label} at {} {step}", work.step_name()))
                    );
                }
            }
        }
        Ok((work, side))
    }
}

/// A training run ([`Fit`]) as [`Resumable`] work: after every update `on_step(fit, side)` may
/// log or evaluate into `side`.
pub struct Training<'a, M: Trainable, S, F> {
    fit: Fit<'a, M>,
    label: String,
    on_step: F,
    side: PhantomData<fn(&mut S)>,
}

impl<'a, M, S, F> Training<'a, M, S, F>
where
    M: Trainable,
    F: FnMut(&Fit<'a, M>, &mut S) -> Result<(), HarnessError>,
{
    /// `fit` with `on_step`; `label` prefixes its errors (e.g. `κ = 0.5, seed 1`).
    pub fn new(fit: Fit<'a, M>, label: impl Into<String>, on_step: F) -> Self {
        Self {
            fit,
            label: label.into(),
            on_step,
            side: PhantomData,
        }
    }

    /// The training run.
    pub fn fit(&self) -> &Fit<'a, M> {
        &self.fit
    }

    /// The training run, given back.
    pub fn into_fit(self) -> Fit<'a, M> {
        self.fit
    }

    fn failed(&self, e: impl std::fmt::Display) -> HarnessError {
        HarnessError::run(format!("{}: {e}", self.label))
    }
}

impl<'a, M, S, F> Resumable for Training<'a, M, S, F>
where
    M: Trainable,
    S: Serialize + DeserializeOwned,
    F: FnMut(&Fit<'a, M>, &mut S) -> Result<(), HarnessError>,
{
    type Side = S;

    fn step(&self) -> usize {
        self.fit.step()
    }

    fn steps(&self) -> usize {
        self.fit.steps()
    }

    fn advance(&mut self, side: &mut S) -> Result<(), HarnessError> {
        self.fit.advance().map_err(|e| self.failed(e))?;
        (self.on_step)(&self.fit, side)
    }

    fn state(&self) -> Result<Vec<u8>, HarnessError> {
        self.fit.checkpoint().map_err(|e| self.failed(e))
    }
}
