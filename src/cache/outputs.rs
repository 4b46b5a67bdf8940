//! Output manifests: ingesting an action's output directory into blobs, and materialising it back.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{BlobStore, Cache, CacheError, io_err};
use crate::digest::Digest;

/// One output file, by relative path.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OutputEntry {
    pub path: String,
    /// Content digest; for a symlink, the digest of its target text.
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
}

/// Everything an action produced, sorted by path. Immutable once made: its digest is computed
/// once and kept, because a source tree's manifest (80,000 entries, 11 MB as JSON) is asked
/// for its digest by every action that reads the tree, several times each.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OutputManifest {
    entries: Vec<OutputEntry>,
    #[serde(skip)]
    digest: std::sync::OnceLock<Digest>,
}

impl PartialEq for OutputManifest {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for OutputManifest {}

/// A blob that did not hold what its manifest promised.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cache blob for `{path}` is corrupt or missing ({digest})")]
#[diagnostic(help(
    "kbuild evicts the entry and rebuilds it; `kbuild cache verify` checks every blob"
))]
pub struct Corrupt {
    pub path: String,
    pub digest: Digest,
}

impl OutputManifest {
    /// The digest dependents see: it changes exactly when some output's path, mode or content does.
    pub fn digest(&self) -> Digest {
        *(self.digest).get_or_init(|| {
            Digest::of_bytes(&serde_json::to_vec(self).expect("manifests serialise"))
        })
    }

    /// The manifest of `entries`, which must be sorted by path.
    pub fn new(entries: Vec<OutputEntry>) -> OutputManifest {
        OutputManifest {
            entries,
            digest: std::sync::OnceLock::new(),
        }
    }

    pub fn entries(&self) -> &[OutputEntry] {
        &self.entries
    }

    pub fn get(&self, path: &str) -> Option<&OutputEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Hashes every file under `dir` and moves it into the blob store. `dir` is consumed.
    pub fn ingest(dir: &Path, blobs: &BlobStore) -> Result<OutputManifest, CacheError> {
        Self::of_tree(dir, |rel, meta| ingest_one(dir, rel, meta, blobs))
    }

    /// The manifest `dir` would have as an action's output, every file hashed and nothing
    /// stored: what `kbuild verify` compares a rebuilt output by.
    pub fn describe(dir: &Path) -> Result<OutputManifest, CacheError> {
        Self::of_tree(dir, |rel, meta| describe_one(dir, rel, meta, None))
    }

    /// Every file and symlink under `dir` as `one` enters it, in parallel, sorted by path.
    fn of_tree(
        dir: &Path,
        one: impl Fn(&str, &std::fs::Metadata) -> Result<OutputEntry, CacheError> + Sync,
    ) -> Result<OutputManifest, CacheError> {
        let mut found = Vec::new();
        walk(dir, "", &mut found).map_err(io_err(dir))?;
        let mut entries = found
            .par_iter()
            .map(|(rel, meta)| one(rel, meta))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(OutputManifest::new(entries))
    }

    /// Links every output into `dest` (which must not exist), verifying each blob as it is read.
    pub fn materialise(&self, blobs: &BlobStore, dest: &Path) -> Result<(), CacheError> {
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let dirs: std::collections::BTreeSet<PathBuf> = self
            .entries
            .iter()
            .filter_map(|e| Path::new(&e.path).parent().map(|p| dest.join(p)))
            .collect();
        for dir in dirs {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        self.entries
            .par_iter()
            .try_for_each(|e| link_one(e, blobs, dest))
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<(String, std::fs::Metadata)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            walk(root, &child, out)?;
        } else {
            out.push((child, meta));
        }
    }
    Ok(())
}

fn ingest_one(
    dir: &Path,
    rel: &str,
    meta: &std::fs::Metadata,
    blobs: &BlobStore,
) -> Result<OutputEntry, CacheError> {
    let entry = describe_one(dir, rel, meta, Some(blobs))?;
    if entry.symlink.is_none() {
        let path = dir.join(rel);
        blobs
            .adopt(&path, entry.digest, entry.executable)
            .map_err(io_err(&path))?;
    }
    Ok(entry)
}

/// How the manifest names one output: a symlink by its target, a file by its content and
/// executable bit. With `blobs`, a link of a stored file that nothing wrote since
/// (packaging's linux.tar.xz) keeps the digest the ledger knows: hashing it again would cost
/// a read of hundreds of MB. (A file with one name, as an action writes most, is no link of
/// anything stored.)
fn describe_one(
    dir: &Path,
    rel: &str,
    meta: &std::fs::Metadata,
    blobs: Option<&BlobStore>,
) -> Result<OutputEntry, CacheError> {
    let path = dir.join(rel);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path)
            .map_err(io_err(&path))?
            .to_string_lossy()
            .into_owned();
        let digest = Digest::of_bytes(target.as_bytes());
        return Ok(OutputEntry {
            path: rel.to_string(),
            digest,
            size: 0,
            executable: false,
            symlink: Some(target),
        });
    }
    let vouched = blobs
        .filter(|_| meta.nlink() > 1)
        .and_then(|blobs| blobs.ledger().vouched_path(&path));
    let digest = match vouched {
        Some(digest) => digest,
        None => Digest::of_file(&path).map_err(io_err(&path))?,
    };
    Ok(OutputEntry {
        path: rel.to_string(),
        digest,
        size: meta.len(),
        executable: meta.permissions().mode() & 0o111 != 0,
        symlink: None,
    })
}

/// Removes a staged tree that lost the race to its place. Its unlinks move the blobs' ctimes,
/// which the ledger then learns, so that the winner's tree is not taken for changed.
fn discard(manifest: &OutputManifest, blobs: &BlobStore, staged: &Path) {
    let files: Vec<(PathBuf, Option<Digest>)> = manifest
        .entries
        .iter()
        .filter(|e| e.symlink.is_none())
        .map(|e| {
            let before = blobs.ledger().vouched_path(&staged.join(&e.path));
            (
                blobs.path(e.digest, e.executable),
                before.filter(|d| *d == e.digest),
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(staged);
    for (blob, before) in files {
        blobs.ledger().note(&blob, before);
    }
}

fn link_one(entry: &OutputEntry, blobs: &BlobStore, dest: &Path) -> Result<(), CacheError> {
    let target = dest.join(&entry.path);
    if let Some(link) = &entry.symlink {
        return std::os::unix::fs::symlink(link, &target).map_err(io_err(&target));
    }
    if !blobs.verify(entry.digest, entry.executable) {
        return Err(Corrupt {
            path: entry.path.clone(),
            digest: entry.digest,
        }
        .into());
    }
    let blob = blobs.path(entry.digest, entry.executable);
    // A hard link shares the blob; a copy is the fallback across filesystems. Verified just
    // above: the ctime the link leaves stands for this content.
    blobs
        .ledger()
        .link_or_copy_known(&blob, &target, Some(entry.digest))
        .map_err(io_err(&target))
}

/// The stamp beside a materialised tree (`trees/<digest>.done`), written once the tree is
/// complete; it is made anew whenever the cache makes the tree again.
pub fn made_stamp(tree: &Path) -> PathBuf {
    let mut name = tree.file_name().unwrap_or_default().to_os_string();
    name.push(".done");
    tree.with_file_name(name)
}

impl Cache {
    /// Where the tree of the outputs with `digest` is (or would be) materialised.
    pub fn tree_path(&self, digest: Digest) -> PathBuf {
        self.dir("trees").join(digest.to_hex())
    }

    /// Whether that tree was completely materialised.
    pub fn tree_ready(&self, digest: Digest) -> bool {
        made_stamp(&self.tree_path(digest)).exists()
    }

    /// The outputs of a manifest as a directory: `trees/<digest>`, made once and reused.
    /// A reused tree is checked with `stat` only, once per process: a file written since it was
    /// made is re-hashed.
    pub fn tree(&self, manifest: &OutputManifest) -> Result<PathBuf, CacheError> {
        let digest = manifest.digest();
        let dest = self.tree_path(digest);
        let stamp = made_stamp(&dest);
        if let Ok(made) = std::fs::metadata(&stamp).and_then(|m| m.modified()) {
            if !self.checked_once(digest) {
                self.check_tree(manifest, &dest, made)?;
                self.mark_checked(digest);
            }
            return Ok(dest);
        }
        let tmp = tempfile::Builder::new()
            .prefix("tree-")
            .tempdir_in(self.dir("tmp"))
            .map_err(io_err(&dest))?;
        let staged = tmp.path().join("t");
        manifest.materialise(&self.blobs, &staged)?;
        match std::fs::rename(&staged, &dest) {
            Ok(()) => {}
            // Another process (or thread) made the same tree first; theirs is identical.
            Err(_) if dest.is_dir() => discard(manifest, &self.blobs, &staged),
            Err(e) => {
                return Err(CacheError::Io {
                    path: dest,
                    source: e,
                });
            }
        }
        std::fs::write(&stamp, b"").map_err(io_err(&stamp))?;
        self.mark_checked(digest);
        Ok(dest)
    }

    fn checked_once(&self, digest: Digest) -> bool {
        self.checked.lock().is_ok_and(|set| set.contains(&digest))
    }

    fn mark_checked(&self, digest: Digest) {
        if let Ok(mut set) = self.checked.lock() {
            set.insert(digest);
        }
    }

    fn forget_checked(&self, digest: Digest) {
        if let Ok(mut set) = self.checked.lock() {
            set.remove(&digest);
        }
    }

    /// Checks a reused tree by `stat`: a file whose size differs, or whose mtime or ctime is
    /// newer than the tree (written, or touched back, since it was made) is hashed again. When
    /// every such file still holds its content, the stamp moves to the check's start, so the
    /// next run trusts them again (a blob linked into a newer tree gets a newer ctime).
    fn check_tree(
        &self,
        manifest: &OutputManifest,
        dest: &Path,
        made: SystemTime,
    ) -> Result<(), CacheError> {
        let started = SystemTime::now();
        let made_ns = made
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let rehashed = std::sync::atomic::AtomicBool::new(false);
        manifest
            .entries
            .par_iter()
            .filter(|e| e.symlink.is_none())
            .try_for_each(|e| {
                let path = dest.join(&e.path);
                // A newer ctime that kbuild's own link or unlink left is no change.
                let fresh = std::fs::symlink_metadata(&path).is_ok_and(|m| {
                    let stamp = crate::statcache::Stamp::of(&m);
                    m.is_file()
                        && m.len() == e.size
                        && stamp.mtime_ns <= made_ns
                        && (stamp.ctime_ns <= made_ns
                            || self.blobs.ledger().vouched(&m) == Some(e.digest))
                });
                if fresh {
                    return Ok::<(), CacheError>(());
                }
                rehashed.store(true, std::sync::atomic::Ordering::Relaxed);
                let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
                if is_file && Digest::of_file(&path).is_ok_and(|d| d == e.digest) {
                    return Ok(());
                }
                Err(Corrupt {
                    path: e.path.clone(),
                    digest: e.digest,
                }
                .into())
            })?;
        if rehashed.into_inner() {
            let stamp = made_stamp(dest);
            let _ = std::fs::File::options()
                .write(true)
                .open(&stamp)
                .and_then(|f| f.set_modified(started));
        }
        Ok(())
    }

    /// Forgets a corrupt tree and the blobs behind it, so that the next build recreates them.
    pub fn drop_tree(&self, manifest: &OutputManifest, corrupt: &Corrupt) {
        let tree = self.tree_path(manifest.digest());
        self.forget_checked(manifest.digest());
        let _ = std::fs::remove_file(made_stamp(&tree));
        let _ = std::fs::remove_dir_all(&tree);
        for entry in manifest
            .entries
            .iter()
            .filter(|e| e.digest == corrupt.digest)
        {
            self.blobs.remove(entry.digest, entry.executable);
        }
    }
}
