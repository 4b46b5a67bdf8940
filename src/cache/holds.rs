//! What keeps `kbuild cache gc` from removing what a running build uses.
//!
//! Every entry a run finds or makes is *held*: its key is appended to the run's holds file
//! (`state/holds/<pid>-<n>.keys`), which the run locks for its whole life, so the kernel drops
//! the lock however the run ends. gc skips the keys of every locked holds file and removes the
//! files it can lock (their runs are gone). Finding an entry and holding it happen under a shared
//! lock on `state/gc.lock`, and so do ingesting an action's outputs and storing its entry; gc
//! takes that lock exclusively while it decides and removes, so no run can find an entry gc is
//! about to remove, nor publish blobs gc takes for unreferenced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Cache;
use crate::key::ActionKey;

pub(super) const GC_LOCK: &str = "gc.lock";
pub(super) const HOLDS: &str = "holds";

/// The holds file of this process, made on the first hold.
#[derive(Debug, Default)]
pub struct Holds {
    file: Mutex<Option<File>>,
}

/// A shared lock on `state/gc.lock`: while one is held, gc does not run.
pub struct Publishing(#[allow(dead_code)] Option<File>);

impl Cache {
    fn gc_lock_path(&self) -> PathBuf {
        self.dir("state").join(GC_LOCK)
    }

    /// Keeps gc out while the caller finds or publishes entries. Best effort: a cache whose
    /// lock cannot be made is one gc cannot lock either.
    pub fn publishing(&self) -> Publishing {
        let file = File::create(self.gc_lock_path()).ok();
        if let Some(file) = &file {
            let _ = file.lock_shared();
        }
        Publishing(file)
    }

    /// The exclusive side of [`Cache::publishing`], for gc.
    pub(super) fn collecting(&self) -> std::io::Result<File> {
        let file = File::create(self.gc_lock_path())?;
        file.lock()?;
        Ok(file)
    }

    /// Whether `key` has an entry; if it has, gc keeps it for as long as this process lives.
    pub fn hold(&self, key: ActionKey) -> bool {
        let _publishing = self.publishing();
        let present = self.has_entry(key);
        if present {
            self.add_hold(key);
        }
        present
    }

    /// Holds `key`, whose entry the caller has just stored (under [`Cache::publishing`]).
    pub fn add_hold(&self, key: ActionKey) {
        let mut file = self.holds.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            *file = open_holds(&self.dir("state").join(HOLDS));
        }
        if let Some(file) = file.as_mut() {
            let _ = writeln!(file, "{key}");
        }
    }
}

/// A new holds file, locked for the life of the process.
fn open_holds(dir: &Path) -> Option<File> {
    std::fs::create_dir_all(dir).ok()?;
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{}-{n}.keys", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()?;
    file.lock().ok()?;
    Some(file)
}

/// The keys held by live runs; the holds files of runs that ended are removed.
pub(super) fn live_holds(dir: &Path) -> std::collections::HashSet<ActionKey> {
    let mut held = std::collections::HashSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return held;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            // Nobody holds it: its run is over.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        held.extend(
            text.lines()
                .filter_map(crate::digest::Digest::from_hex)
                .map(ActionKey),
        );
    }
    held
}
