//! The run fingerprint: a null build answered without parsing, lowering or keying anything.
//!
//! After a fully successful `kbuild run`, kbuild records a digest of everything the run's keys
//! were computed from: its own executable, the texts of `kernel.kdl`, `kernel.lock`, `kernel.local.kdl` and `kernel.local.lock`, the stat
//! data of the package tarballs pinned in the last, the label patterns, the
//! executor, the listing of every patch directory, the content of every input file and the
//! identity of every toolchain it used, together with the key of every action. The next run with
//! the same patterns recomputes that digest (stat-cached, so mostly `stat` calls); when it is
//! unchanged and every recorded key still has its cache entry, every action is cached and the
//! `out/` links are as the recorded run left them, so the run is done. Anything else, or any
//! doubt, takes the full path. See doc/design.md.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::digest::Digest;
use crate::exec::{Executor, Toolset};
use crate::fsutil::SaveError;
use crate::key::ActionKey;
use crate::saved::{NewerState, State};
use crate::statcache::StatCache;

/// What a run depended on besides the manifest text, as the full path learnt it.
#[derive(Default, Debug, Clone, Serialize, Deserialize)]
pub struct Dependencies {
    pub patch_dirs: Vec<String>,
    pub inputs: Vec<String>,
    pub toolsets: Vec<Toolset>,
    pub keys: Vec<ActionKey>,
    /// The executor's name when the manifest chose it (no `--executor`): the digest covers the
    /// manifest's text, so while it holds the manifest chooses the same one again.
    pub default_executor: Option<String>,
    /// The stat of everything `out/` shows (see [`out_digest`]), filled in by [`record`].
    pub out: Option<Digest>,
    /// How many boot tests the run passed (`kbuild test`), for a null run's summary.
    pub tests: usize,
}

fn state<'a>(root: &'a Path, patterns: &'a [String]) -> State<'a> {
    State::Fingerprint {
        workspace: root,
        patterns,
    }
}

/// The digest of the run's world as it is now, given what the last full run depended on.
fn digest(
    root: &Path,
    patterns: &[String],
    exec: &dyn Executor,
    deps: &Dependencies,
    stat: &mut StatCache,
) -> Option<Digest> {
    let mut h = blake3::Hasher::new();
    crate::lowered::hash_kbuild_and_manifest(&mut h, root)?;
    h.update(format!("\n{}\n{}\n", exec.name(), patterns.join(" ")).as_bytes());
    for dir in &deps.patch_dirs {
        h.update(format!("dir {dir}:").as_bytes());
        // An unreadable directory is no null build: the full path reports it.
        for file in crate::plan::patch_files(root, dir).ok()? {
            h.update(file.as_bytes());
        }
    }
    for input in &deps.inputs {
        h.update(format!("input {input} {}\n", stat.digest(&root.join(input)).ok()?).as_bytes());
    }
    for set in &deps.toolsets {
        h.update(format!("tools {}\n", exec.identity(set, stat).ok()?.digest()).as_bytes());
    }
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

/// The record of the last fully successful run of these patterns.
#[derive(Serialize, Deserialize)]
pub struct Record {
    digest: Digest,
    deps: Dependencies,
}

pub fn load(root: &Path, cache: &Cache, patterns: &[String]) -> Result<Option<Record>, NewerState> {
    crate::saved::load(cache.root(), state(root, patterns))
}

impl Record {
    /// How many boot tests the recorded run passed.
    pub fn tests(&self) -> usize {
        self.deps.tests
    }

    /// The executor the manifest chose for the recorded run, if no flag chose it.
    pub fn default_executor(&self) -> Option<&str> {
        self.deps.default_executor.as_deref()
    }

    /// The number of actions, when the recorded run still holds with `exec`: nothing it
    /// depended on changed and all its cache entries exist.
    pub fn null_build(
        &self,
        root: &Path,
        cache: &Cache,
        exec: &dyn Executor,
        patterns: &[String],
    ) -> Option<usize> {
        let deps = &self.deps;
        // What out/ shows must be what the recorded run left: a byte changed behind a link, a
        // tree or blob removed from the cache, a link replaced, all move a stat. Those stats
        // run on the second core, beside the inputs' and the entries' checks.
        std::thread::scope(|scope| {
            let out = scope.spawn(|| deps.out.is_some() && out_digest(root) == deps.out);
            // A stat cache of a newer kbuild: the full path says so.
            let mut stat = StatCache::open(cache.root()).ok()?;
            let now = digest(root, patterns, exec, deps, &mut stat);
            // A null build's only view is stderr.
            if let Err(e) = stat.save() {
                eprintln!("{e}");
            }
            let held = now == Some(self.digest) && deps.keys.iter().all(|k| cache.has_entry(*k));
            (out.join().unwrap_or(false) && held).then_some(deps.keys.len())
        })
    }
}

/// Records a fully successful run, so that the next identical one can take [`null_build`].
/// Without the record the next run takes the full path: a failure to write it is a warning.
pub fn record(
    root: &Path,
    cache: &Cache,
    exec: &dyn Executor,
    patterns: &[String],
    deps: &Dependencies,
) -> Result<(), SaveError> {
    // A stat cache of a newer kbuild: the run has said so already; no record.
    let Ok(mut stat) = StatCache::open(cache.root()) else {
        return Ok(());
    };
    let Some(digest) = digest(root, patterns, exec, deps, &mut stat) else {
        return Ok(());
    };
    stat.save()?;
    let Some(out) = out_digest(root) else {
        return Ok(());
    };
    let deps = Dependencies {
        out: Some(out),
        ..deps.clone()
    };
    crate::saved::save(
        cache.root(),
        state(root, patterns),
        &Record { digest, deps },
    )
}

/// A digest of the stat data (type, size, mode, inode, mtime, ctime, link text) of everything
/// `out/` shows, its links followed into the cache's trees: no file is read, so the null build
/// stays a matter of `stat` calls, yet any write, removal or replacement behind `out/` changes
/// it (a write moves the ctime even when the mtime is put back). `None` when something shown
/// cannot be reached (a dangling link), which the recorded run never leaves.
pub fn out_digest(root: &Path) -> Option<Digest> {
    // Two halves of out/'s top level on two threads: a large matrix shows thousands of files.
    let top = sorted_entries(&root.join("out"))?;
    let (first, second) = top.split_at(top.len() / 2);
    let part = |entries: &[std::fs::DirEntry]| {
        let mut h = blake3::Hasher::new();
        hash_entries(entries, 0, &mut h).map(|()| h.finalize())
    };
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| part(second));
        (part(first), other.join().ok().flatten())
    });
    let mut h = blake3::Hasher::new();
    h.update(a?.as_bytes());
    h.update(b?.as_bytes());
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

fn sorted_entries(dir: &Path) -> Option<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    entries.sort_unstable_by_key(|e| e.file_name());
    Some(entries)
}

/// Hashes entries of what out/ shows, in name order, and the directories among them. A regular
/// file costs one `fstatat` relative to its directory (the entry's type comes with the
/// listing); a link costs a `readlink` and a `stat` through it.
fn hash_entries(entries: &[std::fs::DirEntry], depth: usize, h: &mut blake3::Hasher) -> Option<()> {
    use std::os::unix::ffi::OsStrExt;
    // Trees nest a few levels; a link loop must not walk forever (nor be vouched for).
    if depth > 32 {
        return None;
    }
    for entry in entries {
        h.update(entry.file_name().as_bytes());
        h.update(b"\0");
        let meta = if entry.file_type().ok()?.is_symlink() {
            let path = entry.path();
            h.update(std::fs::read_link(&path).ok()?.as_os_str().as_bytes());
            h.update(b"\0");
            std::fs::metadata(&path).ok()?
        } else {
            entry.metadata().ok()?
        };
        hash_stat(h, &meta);
        if meta.is_dir() {
            hash_entries(&sorted_entries(&entry.path())?, depth + 1, h)?;
        }
    }
    h.update(b"\n");
    Some(())
}

fn hash_stat(h: &mut blake3::Hasher, meta: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let fields = [
        u64::from(meta.is_dir()),
        meta.len(),
        u64::from(meta.mode()),
        meta.ino(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
    ];
    for field in fields {
        h.update(&field.to_le_bytes());
    }
}

/// Forgets the record, e.g. when a run failed: the next run must take the full path.
pub fn forget(root: &Path, cache: &Cache, patterns: &[String]) {
    let _ = std::fs::remove_file(state(root, patterns).path(cache.root()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    #[test]
    fn record_round_trips() {
        let deps = Dependencies {
            patch_dirs: vec!["kernel/6.6.x/patches".into()],
            inputs: vec!["kernel/6.6.x/config-x86_64".into()],
            toolsets: vec![
                Toolset {
                    tools: vec!["make".into(), "gcc".into()],
                    arch: Some(Arch::X86_64),
                    builder: Some("debian:bookworm".into()),
                },
                Toolset {
                    tools: vec!["patch".into()],
                    arch: None,
                    builder: None,
                },
            ],
            keys: vec![ActionKey(Digest::of_bytes(b"a"))],
            default_executor: Some("host".into()),
            out: Some(Digest::of_bytes(b"out")),
            tests: 3,
        };
        let d = Digest::of_bytes(b"d");
        let ws = Path::new("/w");
        let patterns = ["//...".to_string()];
        let bytes = crate::saved::encode(
            state(ws, &patterns),
            &Record {
                digest: d,
                deps: deps.clone(),
            },
        );
        let record: Record = crate::saved::decode(state(ws, &patterns), ws, &bytes)
            .unwrap()
            .unwrap();
        let (back_d, back) = (record.digest, record.deps);
        assert_eq!(back_d, d);
        assert_eq!(back.inputs, deps.inputs);
        assert_eq!(back.toolsets, deps.toolsets);
        assert_eq!(back.keys, deps.keys);
        assert_eq!(back.default_executor, deps.default_executor);
        assert_eq!(back.out, deps.out);
    }
}
