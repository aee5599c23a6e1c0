//! Run directories: `results/<id>/<run>/`, written in a staging directory and renamed into place
//! only when the run succeeded, so a failed or interrupted run never leaves a half-written result
//! and never replaces an existing one.
//!
//! The staging directory is `<parent>/.<name>.partial-<pid>`, and its owner holds an exclusive
//! lock on the `.owner.lock` file inside it for as long as it lives. A process killed outright
//! (SIGKILL, power loss) leaves the folder behind; the next run into the same parent removes
//! every such leftover whose owner is gone (the lock is free, or without a lock file the pid is
//! no longer alive) and never one of a live process, and refuses to write a target that a live
//! process is still writing.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::HarnessError;

/// A run directory being written.
#[derive(Debug)]
pub struct RunDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
    // Held (locked) while this process lives; the lock ends with the process, however it ends.
    _owner: File,
    // Ownership of the target itself, taken before anything about it was decided.
    _lock: RunLock,
}

/// Exclusive ownership of one run target, `<parent>/.<name>.lock`: an advisory lock (`flock`)
/// on a file that holds the owner's pid. It is taken before a run looks at its target, its
/// checkpoint or its leftovers, so of several processes started on one target exactly one
/// proceeds and the others are refused naming it. The kernel releases the lock of a process
/// however it ends; the owner removes the file when it is done, and a loser never creates
/// anything. Parent folders made for the run are removed again if the run leaves nothing in
/// them.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
    made: Vec<PathBuf>,
}

/// Why a target could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// A live process owns the target (its pid when it has written it yet).
    Busy(Option<u32>, PathBuf),
    /// The lock file or its parent folders cannot be made.
    Io(HarnessError),
}

impl From<LockError> for HarnessError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Io(e) => e,
            LockError::Busy(pid, target) => HarnessError::input(format!(
                "another gaussmask process ({}) is writing {}: wait for it or stop it",
                pid.map(|p| format!("pid {p}"))
                    .unwrap_or_else(|| "starting now".into()),
                target.display()
            )),
        }
    }
}

impl RunLock {
    /// Takes the lock of `target`, creating its parent folders (remembered, and removed on drop
    /// when they are left empty).
    ///
    /// # Errors
    /// [`LockError::Busy`] when another live process holds it.
    pub fn acquire(target: &Path) -> Result<Self, LockError> {
        let parent = parent_of(target);
        let made = create_dirs(parent).map_err(LockError::Io)?;
        let path = parent.join(format!(".{}.lock", name_of(target)));
        let result = Self::take(&path).map_err(|e| match e {
            LockError::Busy(pid, _) => LockError::Busy(pid, target.to_path_buf()),
            e => e,
        });
        if result.is_err() {
            remove_empty(&made);
        }
        let file = result?;
        Ok(Self { path, file, made })
    }

    fn take(path: &Path) -> Result<File, LockError> {
        use std::os::unix::fs::MetadataExt;
        let io = |e: std::io::Error| LockError::Io(HarnessError::io("lock", path, &e));
        loop {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy(owner_pid(path), path.to_path_buf()));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // The previous owner may have removed the file between our open and our lock: then
            // we hold a lock on a file nobody else can find, and start over.
            let same = fs::metadata(path)
                .ok()
                .zip(file.metadata().ok())
                .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            file.set_len(0).map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(file);
        }
    }
}

/// The pid written in a held lock file. The owner writes it just after locking, over whatever
/// a killed earlier owner left there: wait briefly for a pid that is alive.
fn owner_pid(path: &Path) -> Option<u32> {
    let mut seen = None;
    for _ in 0..50 {
        seen = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if seen.is_some_and(pid_alive) {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    seen
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so no one can lock this file after we are done with it.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
        remove_empty(&self.made);
    }
}

/// The checkpoint folder of the run that will be committed to `target`,
/// `<parent>/.<name>.checkpoint` (see [`crate::checkpoint`]); [`RunDir::commit`] removes it once
/// the run is in place.
pub fn checkpoint_folder(target: &Path) -> PathBuf {
    parent_of(target).join(format!(".{}.checkpoint", name_of(target)))
}

fn parent_of(target: &Path) -> &Path {
    target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn name_of(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
}

/// Creates `dir` and its missing ancestors; returns the ones it made, deepest first.
fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    fs::create_dir_all(dir).map_err(|e| {
        remove_empty(&missing);
        HarnessError::io("create output directory", dir, &e)
    })?;
    Ok(missing)
}

/// Removes each of `dirs` (deepest first) that is empty.
fn remove_empty(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// The lock file inside a staging directory.
const OWNER_LOCK: &str = ".owner.lock";

/// The run name and owner pid of a staging directory called `.<name>.partial-<pid>`.
fn parse_partial(file_name: &str) -> Option<(&str, u32)> {
    let rest = file_name.strip_prefix('.')?;
    let (name, pid) = rest.rsplit_once(".partial-")?;
    Some((name, pid.parse().ok()?))
}

/// Whether the process that made staging directory `dir` (pid `pid`) still runs.
fn owner_alive(dir: &Path, pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match File::open(dir.join(OWNER_LOCK)) {
        // The lock file decides, even when `pid` now belongs to an unrelated process.
        Ok(f) => matches!(f.try_lock(), Err(TryLockError::WouldBlock)),
        // Not locked yet (or already committed): the pid decides; without /proc, keep it.
        Err(_) => pid_alive(pid),
    }
}

/// Whether a process `pid` exists (where /proc tells; otherwise assumed alive).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the staging directories in `parent` left by processes that are gone; returns the
/// pid of a live process still writing a run called `name`, if any.
fn sweep_partials(parent: &Path, name: &str) -> Option<u32> {
    let mut live = None;
    let Ok(entries) = fs::read_dir(parent) else {
        return None;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((run, pid)) = file_name.to_str().and_then(parse_partial) else {
            continue;
        };
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if owner_alive(&path, pid) {
            if run == name && pid != std::process::id() {
                live = Some(pid);
            }
        } else {
            let _ = fs::remove_dir_all(&path);
        }
    }
    live
}

impl RunDir {
    /// Reserves `target` (which must not exist) and creates its staging directory.
    pub fn create(target: PathBuf) -> Result<Self, HarnessError> {
        let lock = RunLock::acquire(&target)?;
        Self::create_locked(target, lock)
    }

    /// As [`create`](Self::create), for a target whose lock the caller took first.
    pub fn create_locked(target: PathBuf, lock: RunLock) -> Result<Self, HarnessError> {
        if target.exists() {
            return Err(HarnessError::input(format!(
                "output directory {} already exists: refusing to overwrite a result \
                 (pick another --out)",
                target.display()
            )));
        }
        let parent = parent_of(&target);
        let name = name_of(&target);
        if let Some(pid) = sweep_partials(parent, &name) {
            return Err(HarnessError::input(format!(
                "another gaussmask process (pid {pid}) is writing {}: wait for it or stop it",
                target.display()
            )));
        }
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        fs::create_dir(&staging)
            .map_err(|e| HarnessError::io("create output directory in", parent, &e))?;
        let owner_lock = staging.join(OWNER_LOCK);
        let owner = File::create(&owner_lock)
            .and_then(|f| f.try_lock().map_err(std::io::Error::from).map(|()| f))
            .map_err(|e| {
                let _ = fs::remove_dir_all(&staging);
                HarnessError::io("lock", &owner_lock, &e)
            })?;
        Ok(Self {
            staging,
            target,
            committed: false,
            _owner: owner,
            _lock: lock,
        })
    }

    /// The default run directory: `<root>/<id>/<UTC timestamp>`, suffixed until unused.
    pub fn default_target(root: &Path, id: &str) -> PathBuf {
        let stamp = utc_stamp(SystemTime::now(), true);
        let base = root.join(id);
        let mut candidate = base.join(&stamp);
        let mut k = 1;
        while candidate.exists() {
            candidate = base.join(format!("{stamp}-{k}"));
            k += 1;
        }
        candidate
    }

    /// Where the result will be once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes `name` (a path relative to the run directory) atomically (temporary file, then
    /// rename), creating its folders.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, HarnessError> {
        let path = self.staging.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| HarnessError::write_failed("create", parent, &e))?;
        }
        write_atomic(&path, bytes)
    }

    /// Path of `name` inside the staging directory, for writers that need a path (plots).
    pub fn staged_path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Moves the finished run into place.
    pub fn commit(mut self) -> Result<PathBuf, HarnessError> {
        if self.target.exists() {
            // Kept under a name the leftover sweep does not touch.
            let kept = self.target.with_file_name(format!(
                "{}.unclaimed-{}",
                self.target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            let _ = fs::remove_file(self.staging.join(OWNER_LOCK));
            let kept = match fs::rename(&self.staging, &kept) {
                Ok(()) => {
                    self.committed = true;
                    kept
                }
                Err(_) => self.staging.clone(),
            };
            return Err(HarnessError::input(format!(
                "output directory {} appeared during the run: refusing to overwrite it; \
                 this run is left in {}",
                self.target.display(),
                kept.display()
            )));
        }
        // The lock file is not part of the result; the open handle keeps the lock until exit.
        let _ = fs::remove_file(self.staging.join(OWNER_LOCK));
        injected_fault(Path::new("@commit"))
            .and_then(|()| fs::rename(&self.staging, &self.target))
            .map_err(|e| HarnessError::write_failed("move the run into", &self.target, &e))?;
        self.committed = true;
        // Only now, with the result in place (and the target still locked), is the checkpoint
        // no longer needed.
        let _ = fs::remove_dir_all(checkpoint_folder(&self.target));
        Ok(self.target.clone())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// With the `fault-injection` feature: an error for the N-th path containing the text of
/// `GAUSSMASK_FAIL_WRITE=<text>[#N]` (N = 1 by default), as a full disk would give.
#[cfg(feature = "fault-injection")]
pub(crate) fn injected_fault(path: &Path) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var("GAUSSMASK_FAIL_WRITE") else {
        return Ok(());
    };
    let (text, nth) = match spec.rsplit_once('#') {
        Some((t, n)) => (t.to_string(), n.parse().unwrap_or(1)),
        None => (spec, 1),
    };
    if path.to_string_lossy().contains(&text) && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        ));
    }
    Ok(())
}

/// Without the `fault-injection` feature: never.
#[cfg(not(feature = "fault-injection"))]
#[inline]
pub(crate) fn injected_fault(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes a file atomically: a sibling temporary file renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf, HarnessError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        injected_fault(path)?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        HarnessError::write_failed("write", path, &e)
    })?;
    Ok(path.to_path_buf())
}

/// UTC time as `2026-11-23T09:30:00Z` (or `20261123-093000` for file names).
pub fn utc_stamp(t: SystemTime, for_file: bool) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if for_file {
        format!("{y:04}{m:02}{d:02}-{h:02}{mi:02}{s:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// `results/<id>/<UTC time>` under `$GAUSSMASK_RESULTS` (default `results`).
pub fn results_target(id: &str) -> PathBuf {
    let root = std::env::var_os("GAUSSMASK_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("results"));
    RunDir::default_target(&root, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_matches_known_dates() {
        // 2000-03-01T00:00:00Z is 951868800 s after the epoch (a leap-year boundary).
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_868_800);
        assert_eq!(utc_stamp(t, false), "2000-03-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(utc_stamp(t, true), "20231114-221320");
    }

    #[test]
    fn uncommitted_run_leaves_nothing_and_existing_target_is_refused() {
        let root = std::env::temp_dir().join(format!("gm-out-{}", std::process::id()));
        let target = root.join("run");
        {
            let dir = RunDir::create(target.clone()).unwrap();
            dir.write("a.txt", b"x").unwrap();
        }
        // Nothing left: not even `root`, which the run made for its target.
        assert!(!root.exists());
        let dir = RunDir::create(target.clone()).unwrap();
        dir.write("a.txt", b"x").unwrap();
        dir.commit().unwrap();
        assert!(RunDir::create(target.clone()).is_err());
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"x");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn leftovers_go_by_their_lock_and_pid() {
        let root = std::env::temp_dir().join(format!("gm-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let live = sleeper.id();
        let partial = |name: &str, pid: u32, lock: bool| {
            let dir = root.join(format!(".{name}.partial-{pid}"));
            fs::create_dir_all(&dir).unwrap();
            if lock {
                File::create(dir.join(OWNER_LOCK)).unwrap();
            }
            dir
        };
        // Held lock: alive whatever the pid. Free lock: gone even though the pid is in use
        // (a reused pid). No lock file: the pid decides.
        let held = partial("held", u32::MAX - 1, true);
        let holder = File::open(held.join(OWNER_LOCK)).unwrap();
        holder.lock().unwrap();
        let reused = partial("reused", live, true);
        let running = partial("running", live, false);
        let dead = partial("dead", u32::MAX - 1, false);
        let not_a_dir = root.join(".file.partial-1");
        fs::write(&not_a_dir, b"").unwrap();
        assert_eq!(sweep_partials(&root, "running"), Some(live));
        assert!(held.exists() && running.exists() && not_a_dir.exists());
        assert!(!reused.exists() && !dead.exists());
        assert!(RunDir::create(root.join("held")).is_err());
        drop(holder);
        assert_eq!(sweep_partials(&root, "held"), None);
        assert!(!held.exists());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert_eq!(sweep_partials(&root, "running"), None);
        assert!(!running.exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn staging_names_parse() {
        assert_eq!(parse_partial(".run.partial-42"), Some(("run", 42)));
        assert_eq!(
            parse_partial(".a.partial-b.partial-7"),
            Some(("a.partial-b", 7))
        );
        assert_eq!(parse_partial("run.partial-42"), None);
        assert_eq!(parse_partial(".run.partial-x"), None);
        assert_eq!(parse_partial(".run.checkpoint"), None);
    }
}
