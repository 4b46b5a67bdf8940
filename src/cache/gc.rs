//! Cache upkeep: what the cache holds, by kind (`kbuild cache du`), and removing what is least
//! recently used (`kbuild cache gc`).
//!
//! An action cache entry goes with its key record, its log and, once no other entry names
//! them, its tree and blobs. When an entry was last used is the latest of when it was made and
//! when a workspace's last run (whose state file names it) ran: a run that uses an entry
//! touches its workspace's state file, and the state names the current key of every action.
//! Entries held by a running build (see `holds`) are never removed, nor, unless asked, the
//! entries of the last run of the current manifest's actions.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::holds::{HOLDS, live_holds};
use super::{Cache, CacheError, OutputManifest, io_err};
use crate::digest::Digest;
use crate::key::ActionKey;

/// Files and bytes under one part of the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Area {
    pub name: &'static str,
    pub files: u64,
    pub bytes: u64,
}

/// What the cache holds (`kbuild cache du`).
#[derive(Debug, Default)]
pub struct Usage {
    pub areas: Vec<Area>,
    /// Everything on disk, each hard-linked file once (trees and source trees link blobs).
    pub total: u64,
    /// Entries of the current manifest's last run, and the bytes of the blobs they name.
    pub current_entries: usize,
    pub current_blob_bytes: u64,
    /// Bytes of the current manifest's persistent build directories.
    pub current_build_bytes: u64,
}

/// What gc may not remove and how far it goes.
#[derive(Debug, Default)]
pub struct Policy {
    /// Remove the least recently used until the cache is no larger than this.
    pub max_size: Option<u64>,
    /// Remove what was last used longer ago than this.
    pub older_than: Option<Duration>,
    /// The current manifest's entries: kept unless `include_current`.
    pub current: HashSet<ActionKey>,
    /// This workspace's build root and the directories under it the manifest still uses
    /// (`6.6.x/amd64`, `6.6.x/src`): kept unless `include_current`; the others are removed.
    pub build: Option<(PathBuf, HashSet<String>)>,
    /// Let the current manifest's entries and build directories go too, oldest first.
    pub include_current: bool,
}

/// One removed entry.
#[derive(Debug)]
pub struct Removed {
    pub key: ActionKey,
    /// The action it belonged to, when a workspace's state names it.
    pub name: Option<String>,
    pub bytes: u64,
    pub last_used: SystemTime,
}

#[derive(Debug, Default)]
pub struct Collected {
    pub removed: Vec<Removed>,
    pub build_dirs: Vec<(PathBuf, u64)>,
    /// Entries kept because a running build holds them.
    pub held: usize,
    pub before: u64,
    pub after: u64,
}

struct Entry {
    key: ActionKey,
    manifest: OutputManifest,
    last_used: SystemTime,
}

/// A build directory and what removing it frees.
struct BuildDir {
    path: PathBuf,
    lock: PathBuf,
    bytes: u64,
    last_used: SystemTime,
}

const AREAS: [(&str, &str); 10] = [
    ("blobs", "blobs"),
    ("action entries", "ac"),
    ("key records", "keys"),
    ("trees", "trees"),
    ("build directories", "build"),
    ("logs", "logs"),
    ("state", "state"),
    ("remembered sums", "sums"),
    ("compressed layer pieces", "members"),
    ("tmp", "tmp"),
];

/// Per key, the action a last run named it for, and when that run was.
type StateUses = (HashMap<ActionKey, String>, HashMap<ActionKey, SystemTime>);

impl Cache {
    /// Sizes by kind, and how much of it `current` (the current manifest's keys) and `build`
    /// (its build directories) use.
    pub fn usage(
        &self,
        current: &HashSet<ActionKey>,
        build: &[PathBuf],
    ) -> Result<Usage, CacheError> {
        let mut seen = HashSet::new();
        let mut usage = Usage::default();
        for (name, dir) in AREAS {
            let mut area = Area {
                name,
                ..Area::default()
            };
            walk(&self.dir(dir), &mut |meta| {
                use std::os::unix::fs::MetadataExt;
                area.files += 1;
                area.bytes += meta.len();
                if seen.insert((meta.dev(), meta.ino())) {
                    usage.total += meta.len();
                }
            });
            usage.areas.push(area);
        }
        let mut blobs = HashSet::new();
        for key in current {
            if let Some(manifest) = self.lookup(*key) {
                usage.current_entries += 1;
                for e in manifest.entries() {
                    if e.symlink.is_none() && blobs.insert(e.digest) {
                        usage.current_blob_bytes += e.size;
                    }
                }
            }
        }
        for dir in build {
            usage.current_build_bytes += own_bytes(dir);
        }
        Ok(usage)
    }

    /// Removes what `policy` allows, least recently used first.
    pub fn collect(&self, policy: &Policy) -> Result<Collected, CacheError> {
        // Sizing walks the whole cache: done outside the lock that keeps runs from publishing.
        let before = self.usage(&HashSet::new(), &[])?.total;
        let mut out = self.collect_locked(policy, before)?;
        out.after = self.usage(&HashSet::new(), &[])?.total;
        Ok(out)
    }

    fn collect_locked(&self, policy: &Policy, before: u64) -> Result<Collected, CacheError> {
        let state = self.dir("state");
        let _exclusive = self.collecting().map_err(io_err(&state))?;
        let held = live_holds(&state.join(HOLDS));
        let (names, used) = self.state_uses()?;
        let mut entries = self.entries(&used);
        entries.sort_by_key(|e| e.last_used);
        let mut refs = Refs::default();
        for e in &entries {
            refs.count(&e.manifest);
        }
        let mut out = Collected {
            before,
            held: entries.iter().filter(|e| held.contains(&e.key)).count(),
            ..Collected::default()
        };
        let mut budget = Budget {
            policy,
            now: SystemTime::now(),
            total: before,
        };
        // Entries and build directories in one queue, oldest first.
        let mut dirs = sweep_build_dirs(policy, &mut budget, &mut out).peekable();
        let removable = |e: &&Entry| {
            !held.contains(&e.key) && (policy.include_current || !policy.current.contains(&e.key))
        };
        for e in entries.iter().filter(removable) {
            while let Some(dir) = dirs.next_if(|d| d.last_used <= e.last_used) {
                collect_build_dir(dir, &mut budget, &mut out);
            }
            if !budget.due(e.last_used) {
                continue;
            }
            let name = names
                .get(&e.key)
                .cloned()
                .or_else(|| self.logged_name(e.key));
            let bytes = self.remove_entry(e, &mut refs);
            budget.freed(bytes);
            out.removed.push(Removed {
                key: e.key,
                name,
                bytes,
                last_used: e.last_used,
            });
        }
        for dir in dirs {
            collect_build_dir(dir, &mut budget, &mut out);
        }
        self.remove_orphan_blobs(&refs.blobs);
        self.remove_orphan_sums(&refs.blobs);
        self.remove_members();
        Ok(out)
    }

    /// Per key, the action a workspace's last run named it for, and when that run was.
    /// A last run of a newer kbuild stops gc: what it uses cannot be told.
    fn state_uses(&self) -> Result<StateUses, CacheError> {
        let (mut names, mut used) = (HashMap::new(), HashMap::new());
        let Ok(dir) = std::fs::read_dir(self.dir("state")) else {
            return Ok((names, used));
        };
        let last_run = crate::saved::State::LastRun {
            workspace: Path::new(""),
        };
        for file in dir.flatten() {
            let path = file.path();
            if !last_run.is_kind(&path) {
                continue;
            }
            let when = modified(&path);
            for (name, entry) in Cache::read_state(&path)?.actions {
                let slot = used.entry(entry.key).or_insert(when);
                *slot = (*slot).max(when);
                names.insert(entry.key, name);
            }
        }
        Ok((names, used))
    }

    /// The action named in the first line of the log kept for `key` (`# compile //… (key …)`).
    fn logged_name(&self, key: ActionKey) -> Option<String> {
        use std::io::BufRead;
        let file = std::fs::File::open(self.log_of(key)).ok()?;
        let mut first = String::new();
        std::io::BufReader::new(file).read_line(&mut first).ok()?;
        let name = first.strip_prefix("# ")?.split(" (key ").next()?;
        Some(name.trim().to_string())
    }

    /// Every readable action cache entry with when it was last used.
    fn entries(&self, used: &HashMap<ActionKey, SystemTime>) -> Vec<Entry> {
        let mut out = Vec::new();
        for (digest, path) in sharded(&self.dir("ac"), ".json") {
            let key = ActionKey(digest);
            let Some(manifest) = self.lookup(key) else {
                continue;
            };
            let made = modified(&path);
            let last_used = used.get(&key).map_or(made, |t| made.max(*t));
            out.push(Entry {
                key,
                manifest,
                last_used,
            });
        }
        out
    }

    /// Removes one entry with its record, log, and the tree and blobs nothing else names;
    /// returns the bytes freed.
    fn remove_entry(&self, e: &Entry, refs: &mut Refs) -> u64 {
        let mut bytes = 0;
        for path in [
            self.entry_path("ac", e.key.0),
            self.entry_path("keys", e.key.0),
            self.entry_path("origin", e.key.0),
            self.log_of(e.key),
        ] {
            bytes += remove_file(&path);
        }
        for blob in blobs_of(&e.manifest) {
            if release(&mut refs.blobs, blob) {
                for executable in [false, true] {
                    bytes += remove_file(&self.blobs.path(blob, executable));
                }
            }
        }
        let digest = e.manifest.digest();
        // Two keys may make the same outputs, and so share one tree.
        if release(&mut refs.trees, digest) {
            let tree = self.tree_path(digest);
            let _ = super::blobs::remove_any(&tree);
            let mut stamp = tree.into_os_string();
            stamp.push(".done");
            let _ = std::fs::remove_file(PathBuf::from(stamp));
        }
        bytes
    }

    /// The remembered sums of blobs that are gone.
    fn remove_orphan_sums(&self, refs: &HashMap<Digest, u32>) {
        for (digest, path) in self.sums().kept() {
            if refs.get(&digest).is_none_or(|n| *n == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Every compressed layer piece: a memo that names no blob, which the next layer that
    /// needs a piece fills again.
    fn remove_members(&self) {
        for (_, path) in self.members().kept() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Blobs no entry names: left by entries removed earlier by hand or by `cache verify`.
    fn remove_orphan_blobs(&self, refs: &HashMap<Digest, u32>) {
        for (digest, path) in sharded(&self.dir("blobs"), ".x") {
            if refs.get(&digest).is_none_or(|n| *n == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The files of a directory sharded as `ab/cdef…[suffix]`, with the digests they are named by.
/// A file whose name is no digest is not listed (and so never removed).
pub(super) fn sharded(dir: &Path, suffix: &str) -> Vec<(Digest, PathBuf)> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let prefix = shard.file_name().to_string_lossy().to_string();
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().to_string();
            let hex = format!("{prefix}{}", name.trim_end_matches(suffix));
            if let Some(digest) = Digest::from_hex(&hex) {
                out.push((digest, file.path()));
            }
        }
    }
    out
}

/// How many remaining entries name each blob and each tree.
#[derive(Default)]
struct Refs {
    blobs: HashMap<Digest, u32>,
    trees: HashMap<Digest, u32>,
}

impl Refs {
    fn count(&mut self, manifest: &OutputManifest) {
        for blob in blobs_of(manifest) {
            *self.blobs.entry(blob).or_default() += 1;
        }
        *self.trees.entry(manifest.digest()).or_default() += 1;
    }
}

/// One reference to `digest` fewer; whether that was the last.
fn release(refs: &mut HashMap<Digest, u32>, digest: Digest) -> bool {
    let count = refs.entry(digest).or_default();
    *count = count.saturating_sub(1);
    *count == 0
}

/// The file blobs of a manifest (symlinks are stored in the manifest itself).
fn blobs_of(manifest: &OutputManifest) -> impl Iterator<Item = Digest> + '_ {
    let mut seen = HashSet::new();
    manifest
        .entries()
        .iter()
        .filter(|e| e.symlink.is_none())
        .map(|e| e.digest)
        .filter(move |d| seen.insert(*d))
}

/// The cache's size as a collection goes, and what its policy asks.
struct Budget<'a> {
    policy: &'a Policy,
    now: SystemTime,
    total: u64,
}

impl Budget<'_> {
    /// Whether what was last used at `t` goes: the cache is over its size, or `t` is too old.
    fn due(&self, t: SystemTime) -> bool {
        let over = self.policy.max_size.is_some_and(|max| self.total > max);
        over || self
            .policy
            .older_than
            .is_some_and(|age| self.now.duration_since(t).unwrap_or_default() > age)
    }

    fn freed(&mut self, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
    }
}

/// Removes the build directories the manifest no longer names, whatever the policy, and
/// returns the ones it still names that the policy may collect, oldest first.
fn sweep_build_dirs(
    policy: &Policy,
    budget: &mut Budget,
    out: &mut Collected,
) -> std::vec::IntoIter<BuildDir> {
    let mut kept = Vec::new();
    if let Some((root, keep)) = &policy.build {
        for dir in build_dirs(root) {
            let rel = dir.path.strip_prefix(root).unwrap_or(&dir.path);
            if keep.contains(&rel.to_string_lossy().to_string()) {
                if policy.include_current {
                    kept.push(dir);
                }
            } else if let Some(bytes) = remove_build_dir(&dir) {
                budget.freed(bytes);
                out.build_dirs.push((dir.path, bytes));
            }
        }
    }
    kept.sort_by_key(|d| d.last_used);
    kept.into_iter()
}

/// Removes a build directory the policy may collect if it is due.
fn collect_build_dir(dir: BuildDir, budget: &mut Budget, out: &mut Collected) {
    if budget.due(dir.last_used)
        && let Some(bytes) = remove_build_dir(&dir)
    {
        budget.freed(bytes);
        out.build_dirs.push((dir.path, bytes));
    }
}

/// The persistent build directories under one workspace's build root: `<series>/<target>`
/// (with its `lock` inside) and `<series>/src…` (with `src….lock` beside it).
fn build_dirs(root: &Path) -> Vec<BuildDir> {
    let mut out = Vec::new();
    let Ok(series) = std::fs::read_dir(root) else {
        return out;
    };
    for series in series.flatten().filter(|s| s.path().is_dir()) {
        let Ok(dirs) = std::fs::read_dir(series.path()) else {
            continue;
        };
        for dir in dirs.flatten().filter(|d| d.path().is_dir()) {
            let path = dir.path();
            let inside = path.join("lock");
            let lock = if inside.is_file() {
                inside
            } else {
                let mut beside = path.clone().into_os_string();
                beside.push(".lock");
                PathBuf::from(beside)
            };
            out.push(BuildDir {
                bytes: own_bytes(&path),
                last_used: modified(&lock),
                path,
                lock,
            });
        }
    }
    out
}

/// Removes a build directory unless a build holds its lock; the bytes freed.
fn remove_build_dir(dir: &BuildDir) -> Option<u64> {
    let lock = std::fs::File::open(&dir.lock).ok();
    if let Some(lock) = &lock
        && lock.try_lock().is_err()
    {
        return None;
    }
    std::fs::remove_dir_all(&dir.path).ok()?;
    // The bookkeeping files beside a source tree (`src.lock`, `src.index` …) go with it.
    if let (Some(parent), Some(name)) = (dir.path.parent(), dir.path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        for file in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if file.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
    Some(dir.bytes)
}

/// Bytes of the files under `dir` that are not hard links shared with something else.
fn own_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    walk(dir, &mut |meta| {
        if meta.nlink() == 1 {
            bytes += meta.len();
        }
    });
    bytes
}

/// Calls `f` with the metadata of every file (not directory) under `dir`, symlinks unfollowed.
fn walk(dir: &Path, f: &mut dyn FnMut(&std::fs::Metadata)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            walk(&entry.path(), f);
        } else {
            f(&meta);
        }
    }
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Removes a file; the bytes it held, 0 if there was none.
fn remove_file(path: &Path) -> u64 {
    let bytes = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    match std::fs::remove_file(path) {
        Ok(()) => bytes,
        Err(_) => 0,
    }
}

/// `10G`, `512MB`, `1.5GiB`, `2000000`: sizes as people write them; `k`, `M`, `G`, `T` are
/// powers of 1000 (as kbuild prints sizes), `KiB`, `MiB`, `GiB`, `TiB` powers of 1024.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let (prefix, base) = match unit.strip_suffix("ib") {
        Some(prefix) => (prefix, 1024f64),
        None => (unit.strip_suffix('b').unwrap_or(&unit), 1000f64),
    };
    let power = match prefix {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return None,
    };
    (number >= 0.0 && number.is_finite()).then(|| (number * base.powi(power)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("10G"), Some(10_000_000_000));
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("2000"), Some(2000));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("5X"), None);
    }
}
