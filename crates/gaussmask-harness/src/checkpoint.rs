//! Checkpoints and resume. A run that can be interrupted keeps its checkpoint beside the run
//! directory it will become, in `<parent>/.<name>.checkpoint/`: the resolved config, the run's
//! options, and whatever state its experiment saves (each file written atomically). SIGINT and
//! SIGTERM set a flag the training loops poll: they save a checkpoint and stop, the run exits
//! with code 130 and no result, and `gaussmask run <id> --resume <run dir>` continues it. A
//! second Ctrl-C stops at once. The checkpoint folder is removed when the run commits.
//!
//! Two kinds of saved values: a *unit* ([`Checkpoints::unit`]) is a finished piece of work whose
//! result is read back instead of recomputed; a *state* ([`Checkpoints::save_state`]) is a
//! training loop's bytes plus a serde value beside them, kept in one file so that a kill at any
//! instant leaves either the old pair or the new one, never a mix.
//!
//! Nothing saved is trusted blindly: a unit file starts with a line naming its key and the
//! SHA-256 of its content, a state file holds its key and the SHA-256 of the rest, and a file
//! whose key or checksum does not match (edited, damaged, or copied from another unit) is
//! refused naming the file (exit 2), never used.
//!
//! Values go through [`encode`] and [`decode`]: RON, which covers the whole serde data model
//! (unit, nested options, 128-bit integers, maps with any key, every enum form) and prints
//! floats in their shortest round-trip form, so a value read back is bit-identical to the one
//! saved. (TOML, used before, has no unit, no `None` inside arrays, no integer above `i64::MAX`
//! and only string keys: an experiment whose per-epoch side value was `()` could not save.)

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::output::write_atomic;
use crate::provenance::sha256_hex;

pub use crate::output::checkpoint_folder as folder_for;

/// Encodes a checkpointed value (see the module docs for why RON).
///
/// # Errors
/// Only when `value`'s own `Serialize` implementation fails.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, HarnessError> {
    ron::to_string(value)
        .map(String::into_bytes)
        .map_err(|e| HarnessError::run(format!("cannot encode a checkpoint: {e}")))
}

/// Reads what [`encode`] wrote.
///
/// # Errors
/// Bytes that are not UTF-8, or not a RON text of `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    ron::from_str(text).map_err(|e| e.to_string())
}

/// First bytes of a state file: name and format version.
const STATE_MAGIC: &[u8; 8] = b"GMSTATE2";

/// Start of the first line of a unit file.
const UNIT_HEADER: &str = "// gaussmask unit ";

/// A unit's encoded output behind a first line naming its key and checksum:
/// `// gaussmask unit <key> sha256 <hex>`. The rest is the RON text, still readable.
pub fn seal_unit(key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{UNIT_HEADER}{key} sha256 {}\n", sha256_hex(body)).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The body of a unit file sealed by [`seal_unit`] for `key`.
///
/// # Errors
/// A file without the header, of another unit, or whose content does not match its checksum.
pub fn open_unit<'a>(key: &str, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("not a gaussmask unit file (no header line)")?;
    let header = std::str::from_utf8(&bytes[..end])
        .ok()
        .and_then(|h| h.strip_prefix(UNIT_HEADER))
        .and_then(|h| h.split_once(" sha256 "))
        .ok_or("not a gaussmask unit file (no header line)")?;
    let body = &bytes[end + 1..];
    if header.0 != key {
        return Err(format!(
            "holds unit '{}', not '{key}': it is not used",
            header.0
        ));
    }
    if header.1 != sha256_hex(body) {
        return Err(
            "its content does not match its checksum (edited or damaged): it is not used; \
             delete it to recompute the unit"
                .into(),
        );
    }
    Ok(body)
}

/// What a resumed run takes over from the run it continues (besides the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOptions {
    /// Experiment id.
    pub experiment: String,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Smoke mode.
    pub smoke: bool,
    /// `--save-weights`.
    pub save_weights: bool,
    /// `--shard I/N`.
    #[serde(default)]
    pub shard: Option<crate::selection::Shard>,
    /// `--diagnostics`.
    #[serde(default)]
    pub diagnostics: Option<crate::diagnostics::DiagnosticsRequest>,
}

/// A run's checkpoint folder.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dir: PathBuf,
    every: usize,
}

impl Checkpoints {
    pub(crate) fn new(dir: PathBuf, every: usize) -> Self {
        Self { dir, every }
    }

    /// Steps between two checkpoints of a training loop (0: only when interrupted).
    pub fn every(&self) -> usize {
        self.every
    }

    /// Whether a loop that has just done `step` steps should save now.
    pub fn due(&self, step: usize) -> bool {
        interrupted() || (self.every > 0 && step.is_multiple_of(self.every))
    }

    /// Saves `name` in the checkpoint folder, atomically.
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<(), HarnessError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| HarnessError::write_failed("create checkpoint folder", &self.dir, &e))?;
        write_atomic(&self.dir.join(name), bytes).map(|_| ())
    }

    /// The saved `name`, if any.
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join(name)).ok()
    }

    /// Removes the saved `name` (it is superseded), ignoring a missing file.
    pub fn remove(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn corrupt(&self, name: &str, e: impl std::fmt::Display) -> HarnessError {
        HarnessError::input(format!("{}: {e}", self.dir.join(name).display()))
    }

    /// Runs `work` once: its result is kept as `<key>.done.ron` and read back, instead of
    /// recomputed, when a resumed run reaches `key` again. The state saved under `key` while
    /// the unit ran is dropped once the unit is done.
    ///
    /// # Errors
    /// `work`'s error, a result that cannot be written, or a kept result that cannot be read
    /// (naming the file).
    pub fn unit<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        work: impl FnOnce() -> Result<T, HarnessError>,
    ) -> Result<T, HarnessError> {
        let name = format!("{key}.done.ron");
        if let Some(bytes) = self.load(&name) {
            let body = open_unit(key, &bytes).map_err(|e| self.corrupt(&name, e))?;
            return decode(body).map_err(|e| self.corrupt(&name, e));
        }
        let value = work()?;
        self.save(&name, &seal_unit(key, &encode(&value)?))?;
        self.remove(&format!("{key}.state"));
        Ok(value)
    }

    /// Saves a training loop's `state` bytes and its `side` value as `<key>.state`, in one
    /// atomic write: the magic, the SHA-256 of the rest, then the key, the side value and the
    /// state, each length-prefixed but the last.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save_state<S: Serialize + ?Sized>(
        &self,
        key: &str,
        state: &[u8],
        side: &S,
    ) -> Result<(), HarnessError> {
        use sha2::Digest;
        let side = encode(side)?;
        let mut rest = Vec::with_capacity(16 + key.len() + side.len() + state.len());
        for part in [key.as_bytes(), &side] {
            rest.extend_from_slice(&(part.len() as u64).to_le_bytes());
            rest.extend_from_slice(part);
        }
        rest.extend_from_slice(state);
        let mut bytes = Vec::with_capacity(STATE_MAGIC.len() + 32 + rest.len());
        bytes.extend_from_slice(STATE_MAGIC);
        bytes.extend_from_slice(&sha2::Sha256::digest(&rest));
        bytes.extend_from_slice(&rest);
        self.save(&format!("{key}.state"), &bytes)
    }

    /// What [`save_state`](Self::save_state) kept under `key`, if anything.
    ///
    /// # Errors
    /// A file that is not a state file or whose side value is not an `S` (naming the file).
    pub fn load_state<S: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, S)>, HarnessError> {
        let name = format!("{key}.state");
        let Some(bytes) = self.load(&name) else {
            return Ok(None);
        };
        use sha2::Digest;
        let header = STATE_MAGIC.len() + 32;
        if bytes.len() < header || &bytes[..STATE_MAGIC.len()] != STATE_MAGIC {
            return Err(self.corrupt(&name, "not a gaussmask state file"));
        }
        let rest = &bytes[header..];
        if sha2::Sha256::digest(rest).as_slice() != &bytes[STATE_MAGIC.len()..header] {
            return Err(self.corrupt(
                &name,
                "its content does not match its checksum (edited, damaged or truncated): it is \
                 not used; delete it to restart the unit",
            ));
        }
        let mut at = 0;
        let mut part = || {
            let len = rest
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            let end = len
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| (at + 8).checked_add(n))
                .filter(|&end| end <= rest.len());
            let end = end.ok_or_else(|| self.corrupt(&name, "truncated state file"))?;
            let out = &rest[at + 8..end];
            at = end;
            Ok::<_, HarnessError>(out)
        };
        let saved_key = part()?;
        if saved_key != key.as_bytes() {
            return Err(self.corrupt(
                &name,
                format!(
                    "holds the state of '{}', not '{key}': it is not used",
                    String::from_utf8_lossy(saved_key)
                ),
            ));
        }
        let side = decode(part()?).map_err(|e| self.corrupt(&name, e))?;
        Ok(Some((rest[at..].to_vec(), side)))
    }
}

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether SIGINT or SIGTERM arrived: loops save and stop.
pub fn interrupted() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Installs the SIGINT/SIGTERM handlers (once): the first signal sets the flag, a second one
/// ends the process at once with code 130.
pub(crate) fn install_signal_handlers() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag().clone());
            let _ = signal_hook::flag::register(signal, flag().clone());
        }
    });
}

/// The error an interrupted run ends with: exit 130, and how to go on (`command` is what runs
/// the experiment, e.g. `gaussmask run depth`).
pub fn interrupted_error(command: &str, target: &Path, what: &str) -> HarnessError {
    HarnessError::interrupted(format!(
        "interrupted {what}: checkpoint saved; continue with: {command} --resume {}",
        target.display()
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;

    use super::*;

    /// Every shape of the serde data model, in the places TOML refused them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Variant {
        Unit,
        Newtype(f64),
        Tuple(u8, Option<()>),
        Struct { inner: Option<Option<f32>> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        unit: (),
        some_unit: Option<()>,
        some_none: Option<Option<f64>>,
        holes: Vec<Option<f64>>,
        big: u64,
        wide: i128,
        keyed: BTreeMap<(u8, i64), String>,
        variants: Vec<Variant>,
        text: String,
        letter: char,
        pair: (f64, f32),
        bytes: Vec<u8>,
        nested: Option<Box<Everything>>,
    }

    fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
        decode(&encode(value).unwrap()).unwrap()
    }

    #[test]
    fn every_serde_shape_round_trips() {
        // The value image-accuracy checkpointed (its per-epoch side value) and failed on.
        round_trip(&());
        assert_eq!(round_trip(&Some(())), Some(()));
        assert_eq!(round_trip(&None::<()>), None);
        assert_eq!(round_trip(&Some(None::<u8>)), Some(None));
        let leaf = Everything {
            unit: (),
            some_unit: Some(()),
            some_none: Some(None),
            holes: vec![None, Some(-0.0), Some(f64::INFINITY), None],
            big: u64::MAX,
            wide: i128::MIN,
            keyed: BTreeMap::from([((1, -5), "quote \" slash \\ nul \0 é\n".into())]),
            variants: vec![
                Variant::Unit,
                Variant::Newtype(5e-324),
                Variant::Tuple(7, None),
                Variant::Struct {
                    inner: Some(Some(f32::MIN_POSITIVE / 3.0)),
                },
            ],
            text: String::new(),
            letter: '\'',
            pair: (0.1 + 0.2, 0.1),
            bytes: vec![0, 255],
            nested: None,
        };
        let value = Everything {
            nested: Some(Box::new(leaf)),
            ..round_trip(&Everything {
                unit: (),
                some_unit: None,
                some_none: None,
                holes: vec![],
                big: 0,
                wide: i128::MAX,
                keyed: BTreeMap::new(),
                variants: vec![],
                text: "x".into(),
                letter: 'λ',
                pair: (f64::MAX, f32::MIN),
                bytes: vec![],
                nested: None,
            })
        };
        assert_eq!(round_trip(&value), value);
        let map: HashMap<u32, Vec<(f64, bool)>> = HashMap::from([(3, vec![(1.5, true)])]);
        assert_eq!(round_trip(&map), map);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Floats come back with the same bits (NaN as a NaN).
        #[test]
        fn floats_round_trip_bit_exactly(bits in any::<u64>(), small in any::<u32>()) {
            let (x, y) = (f64::from_bits(bits), f32::from_bits(small));
            let (bx, by): (f64, f32) = round_trip(&(x, y));
            prop_assert!(bx.to_bits() == x.to_bits() || (x.is_nan() && bx.is_nan()));
            prop_assert!(by.to_bits() == y.to_bits() || (y.is_nan() && by.is_nan()));
        }

        /// Any text, and options and vectors of floats, come back unchanged.
        #[test]
        fn strings_and_optional_floats_round_trip(
            text in any::<String>(),
            values in proptest::collection::vec(proptest::option::of(-1e300f64..1e300), 0..20),
        ) {
            let value = (text, values, ());
            prop_assert_eq!(round_trip(&value), value);
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gm-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn states_and_units_come_back_and_damage_is_named() {
        let dir = scratch("state");
        let ck = Checkpoints::new(dir.clone(), 1);
        assert!(ck.load_state::<()>("a").unwrap().is_none());
        ck.save_state("a", &[1, 2, 3], &()).unwrap();
        assert_eq!(ck.load_state::<()>("a").unwrap(), Some((vec![1, 2, 3], ())));
        let side = vec![Some(0.5), None];
        ck.save_state("b", &[], &side).unwrap();
        assert_eq!(ck.load_state("b").unwrap(), Some((vec![], side)));
        // A finished unit is read back (the closure is not run) and drops the unit's state.
        assert_eq!(ck.unit("a", || Ok(())).unwrap(), ());
        assert!(ck.load("a.state").is_none());
        let again: () = ck.unit("a", || panic!("recomputed")).unwrap();
        assert_eq!(again, ());
        // Damage: wrong magic, a flipped byte, a cut file, another key's file, a side value
        // of another type.
        let good = ck.load("b.state").unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for (bytes, needle) in [
            (
                b"GMSTATE1\0\0\0\0\0\0\0\0".to_vec(),
                "not a gaussmask state file",
            ),
            (flipped, "does not match its checksum"),
            (
                good[..good.len() - 1].to_vec(),
                "does not match its checksum",
            ),
            (good.clone(), "holds the state of 'b', not 'c'"),
        ] {
            ck.save("c.state", &bytes).unwrap();
            let e = ck.load_state::<Vec<Option<f64>>>("c").unwrap_err();
            assert!(e.message().contains(needle), "{e}");
            assert!(e.message().contains("c.state") && e.code() == 2, "{e}");
        }
        let e = ck.load_state::<String>("b").unwrap_err().to_string();
        assert!(e.contains("b.state"), "{e}");
        // Unit files: unreadable, edited (one digit), another unit's.
        ck.save("d.done.ron", b"(").unwrap();
        let e = ck.unit::<u8>("d", || Ok(1)).unwrap_err().to_string();
        assert!(e.contains("d.done.ron") && e.contains("no header"), "{e}");
        assert_eq!(ck.unit("e", || Ok(0.25f64)).unwrap(), 0.25);
        let sealed = ck.load("e.done.ron").unwrap();
        assert!(sealed.starts_with(b"// gaussmask unit e sha256 "));
        let edited = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("0.25", "0.35");
        ck.save("e.done.ron", edited.as_bytes()).unwrap();
        let e = ck.unit::<f64>("e", || panic!("recomputed")).unwrap_err();
        assert!(
            e.message().contains("e.done.ron") && e.message().contains("checksum"),
            "{e}"
        );
        assert_eq!(e.code(), 2);
        ck.save("f.done.ron", &sealed).unwrap();
        let e = ck.unit::<f64>("f", || panic!("recomputed")).unwrap_err();
        assert!(e.message().contains("holds unit 'e', not 'f'"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
