//! The local cache: content-addressed blobs, the action cache, key records and per-workspace state.
//!
//! Layout under the cache root (see `doc/cache.md`):
//! `blobs/` file contents by blake3, `ac/` action key to output manifest, `keys/` key records,
//! `trees/` materialised outputs by output digest, `state/` the last run of each workspace,
//! `build/` persistent kernel build directories, `logs/`, and `tmp/` for work in progress.

mod blobs;
mod outputs;
mod state;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use blobs::BlobStore;
pub use outputs::{Corrupt, OutputEntry, OutputManifest};
pub use state::{LastRun, RunEntry};

use crate::digest::Digest;
use crate::key::{ActionKey, KeyRecord};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CacheError {
    #[error("cache I/O on `{path}`: {source}")]
    #[diagnostic(help(
        "check that the cache directory is writable, or move it with --cache-dir / KBUILD_CACHE"
    ))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Corrupt(#[from] Corrupt),
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A handle on the cache directory; cheap to clone and safe to share between processes.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    pub blobs: BlobStore,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for dir in [
            "blobs", "ac", "keys", "trees", "state", "build", "logs", "tmp",
        ] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        let root = root.canonicalize().map_err(io_err(root))?;
        Ok(Cache {
            blobs: BlobStore::new(root.join("blobs")),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A fresh private directory for one action attempt, removed when dropped.
    pub fn scratch(&self) -> Result<tempfile::TempDir, CacheError> {
        let tmp = self.dir("tmp");
        tempfile::Builder::new()
            .prefix("action-")
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp))
    }

    fn entry_path(&self, dir: &str, digest: Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root
            .join(dir)
            .join(&hex[..2])
            .join(format!("{}.json", &hex[2..]))
    }

    /// Whether an action cache entry exists for `key`: one `stat`, the null-build fast path.
    pub fn has_entry(&self, key: ActionKey) -> bool {
        self.entry_path("ac", key.0).is_file()
    }

    /// The output manifest cached for `key`, or `None` when there is none or it is unreadable.
    pub fn lookup(&self, key: ActionKey) -> Option<OutputManifest> {
        let bytes = std::fs::read(self.entry_path("ac", key.0)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a successful action. The first writer wins: an entry, once visible, never changes,
    /// so a digest read from it earlier stays true.
    pub fn store(&self, key: ActionKey, manifest: &OutputManifest) -> Result<(), CacheError> {
        let path = self.entry_path("ac", key.0);
        write_once(
            &path,
            &serde_json::to_vec(manifest).expect("manifests serialise"),
        )
    }

    /// Drops the entry for `key`, after its outputs were found corrupt or missing.
    pub fn evict(&self, key: ActionKey) {
        let _ = std::fs::remove_file(self.entry_path("ac", key.0));
    }

    pub fn store_record(&self, record: &KeyRecord) -> Result<ActionKey, CacheError> {
        let bytes = record.encode();
        let key = ActionKey(Digest::of_bytes(&bytes));
        let path = self.entry_path("keys", key.0);
        if !path.is_file() {
            write_once(&path, &bytes)?;
        }
        Ok(key)
    }

    pub fn load_record(&self, key: ActionKey) -> Option<KeyRecord> {
        let bytes = std::fs::read(self.entry_path("keys", key.0)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Writes `bytes` to a temp file beside `path` and publishes it with a hard link, which fails
/// rather than replacing an existing file: readers see nothing or the whole file.
pub fn write_once(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().expect("cache paths have parents");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CacheError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes `bytes` to `path` atomically, replacing what was there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    crate::fsutil::write_atomic(path, bytes).map_err(io_err(path))
}
