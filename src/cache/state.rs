//! What the last run of a workspace did: per action name its key, output digest, outcome and reason.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Cache, CacheError, io_err, write_atomic};
use crate::digest::Digest;
use crate::key::ActionKey;
use crate::saved::{NewerState, State};

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RunEntry {
    pub key: ActionKey,
    /// The output digest, when the action succeeded.
    pub output: Option<Digest>,
    pub outcome: LastOutcome,
    /// Why it executed, in words.
    pub reason: Option<String>,
}

/// How an action ended in the last run that decided it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LastOutcome {
    Cached,
    Executed,
    /// Taken from the remote cache.
    Remote,
    Failed,
}

/// The last run's entries by action name. Kept in one file so a null build reads it once.
#[derive(Clone, Debug, Default)]
pub struct LastRun {
    pub actions: BTreeMap<String, RunEntry>,
    /// The keys among them whose action cache entries an [`EntryCheck`] found.
    present: HashSet<ActionKey, KeyHasher>,
}

impl LastRun {
    /// Takes the outcome of an [`EntryCheck`] made of this state's keys.
    pub fn checked(&mut self, check: EntryCheck) {
        let found = check.found.iter().map(|f| f.load(Ordering::Relaxed));
        self.present = (check.keys.iter().zip(found))
            .filter_map(|(&key, found)| found.then_some(key))
            .collect();
    }

    /// Whether the [`EntryCheck`] taken found the entry of `key`.
    pub fn found_present(&self, key: ActionKey) -> bool {
        self.present.contains(&key)
    }

    /// The entries as saved: sorted by name (the map's order), so the map is built in one pass.
    fn from_entries(actions: Vec<(String, RunEntry)>) -> LastRun {
        LastRun {
            actions: actions.into_iter().collect(),
            present: HashSet::default(),
        }
    }
}

/// Hashes a key by its first eight bytes: keys are blake3 digests, already uniform, and a
/// set of thousands of them is built and asked on the path of every plan.
#[derive(Clone, Copy, Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    /// Takes the first eight bytes of each write: a key's digest is one write (after its
    /// length), and any eight bytes of a blake3 digest are uniform.
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// Looks for the action cache entry of every key the last run recorded, so that planning,
/// which would look for most of the same keys again one by one, need not: one `fstatat` per
/// key, made on the other core while the graph is lowered, and by both once it is (planning
/// after an edit spent half its time deciding on these lookups). A plan holds nothing, so an
/// entry found a moment before the decision is as good as one found at it; a run holds each
/// entry as it decides instead.
pub struct EntryCheck {
    keys: Vec<ActionKey>,
    found: Vec<AtomicBool>,
    /// The first key no thread has taken yet.
    next: AtomicUsize,
}

impl EntryCheck {
    /// Keys taken at a time: few enough that two threads finish together.
    const CHUNK: usize = 64;

    pub fn new(last: &LastRun) -> EntryCheck {
        let keys: Vec<ActionKey> = last.actions.values().map(|e| e.key).collect();
        EntryCheck {
            found: keys.iter().map(|_| AtomicBool::new(false)).collect(),
            keys,
            next: AtomicUsize::new(0),
        }
    }

    /// Checks keys until none is left; any number of threads may help.
    pub fn work(&self, cache: &Cache) {
        loop {
            let start = self.next.fetch_add(Self::CHUNK, Ordering::Relaxed);
            if start >= self.keys.len() {
                return;
            }
            let end = (start + Self::CHUNK).min(self.keys.len());
            for i in start..end {
                if cache.has_entry(self.keys[i]) {
                    self.found[i].store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Cache {
    /// The state file of the workspace at `root`.
    fn state_path(&self, workspace: &Path) -> PathBuf {
        State::LastRun { workspace }.path(self.root())
    }

    /// Marks the workspace's last run as now: gc takes every entry it names as just used.
    pub fn touch_state(&self, workspace: &Path) {
        if let Ok(file) = std::fs::File::options()
            .append(true)
            .open(self.state_path(workspace))
        {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }

    /// The last run of the workspace; nothing when none is saved (or its layout is older).
    pub fn load_state(&self, workspace: &Path) -> Result<LastRun, NewerState> {
        let entries = crate::saved::load(self.root(), State::LastRun { workspace })?;
        Ok(entries.map(LastRun::from_entries).unwrap_or_default())
    }

    /// The last run saved in `path` (gc reads every workspace's).
    pub(super) fn read_state(path: &Path) -> Result<LastRun, NewerState> {
        let bytes = std::fs::read(path).unwrap_or_default();
        let state = State::LastRun { workspace: path };
        let entries = crate::saved::decode(state, path, &bytes)?;
        Ok(entries.map(LastRun::from_entries).unwrap_or_default())
    }

    /// Merges `updates` into the stored state under a lock, so that two concurrent runs on one
    /// workspace each keep what they did.
    pub fn save_state(
        &self,
        workspace: &Path,
        updates: &BTreeMap<String, RunEntry>,
    ) -> Result<(), CacheError> {
        let path = self.state_path(workspace);
        let lock_path = path.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let mut state = self.load_state(workspace)?;
        for (name, entry) in updates {
            state.actions.insert(name.clone(), entry.clone());
        }
        let entries: Vec<(&String, &RunEntry)> = state.actions.iter().collect();
        write_atomic(
            &path,
            &crate::saved::encode(State::LastRun { workspace }, &entries),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let ws = Path::new("/some/workspace");
        let entry = |output, reason: Option<&str>| RunEntry {
            key: ActionKey(Digest::of_bytes(b"k")),
            output,
            outcome: LastOutcome::Executed,
            reason: reason.map(String::from),
        };
        let updates = BTreeMap::from([
            (
                "compile //6.6.x:amd64".to_string(),
                entry(
                    Some(Digest::of_bytes(b"o")),
                    Some("the file `a\tb` changed"),
                ),
            ),
            ("tag //6.6.x:amd64".to_string(), entry(None, None)),
        ]);
        cache.save_state(ws, &updates).unwrap();
        assert_eq!(cache.load_state(ws).unwrap().actions, updates);
        assert!(
            cache
                .load_state(Path::new("/elsewhere"))
                .unwrap()
                .actions
                .is_empty()
        );
    }

    #[test]
    fn an_entry_check_shared_by_two_threads_finds_exactly_the_cached_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut run = LastRun::default();
        let keys: Vec<ActionKey> = (0..300u32)
            .map(|i| ActionKey(Digest::of_bytes(&i.to_le_bytes())))
            .collect();
        for (i, &key) in keys.iter().enumerate() {
            let entry = RunEntry {
                key,
                output: None,
                outcome: LastOutcome::Cached,
                reason: None,
            };
            run.actions.insert(format!("action {i}"), entry);
            if i % 3 == 0 {
                cache.store(key, &Default::default()).unwrap();
            }
        }
        let check = EntryCheck::new(&run);
        std::thread::scope(|s| {
            s.spawn(|| check.work(&cache));
            check.work(&cache);
        });
        run.checked(check);
        for (i, &key) in keys.iter().enumerate() {
            assert_eq!(run.found_present(key), i % 3 == 0, "key {i}");
        }
        let unknown = ActionKey(Digest::of_bytes(b"never recorded"));
        assert!(!run.found_present(unknown));
    }
}
