//! The local cache: content-addressed blobs, the action cache, key records and per-workspace state.
//!
//! Layout under the cache root (see `doc/cache.md`):
//! `blobs/` file contents by blake3, `ac/` action key to output manifest, `keys/` key records,
//! `trees/` materialised outputs by output digest, `state/` the last run of each workspace,
//! `build/` persistent kernel build directories, `logs/`, `sums/` and `members/` (memos of
//! sums and of compressed layer pieces), and `tmp/` for work in progress.

mod blobs;
mod gc;
mod holds;
mod members;
mod outputs;
mod shelf;
mod state;
mod sums;
mod sweep;
mod verify;
mod workspaces;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use blobs::BlobStore;
pub use gc::{Area, Collected, Policy, Removed, Usage, parse_size};
pub use holds::Publishing;
pub use members::Members;
pub use outputs::{Corrupt, OutputEntry, OutputManifest, made_stamp};
pub use state::{EntryCheck, LastOutcome, LastRun, RunEntry};
pub use sums::{FileSums, Sums};
pub use verify::VerifyReport;
pub use workspaces::{build_root, log_name, logs_dir};

/// Where an action cache entry came from when another machine built it: the remote cache it was
/// taken from, and the trusted key that signed it (none when the reader asked for no signature).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub remote: String,
    pub signed_by: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.signed_by {
            Some(key) => write!(
                f,
                "taken from the remote cache {}, signed by {key}",
                self.remote
            ),
            None => write!(f, "taken from the remote cache {}, unsigned", self.remote),
        }
    }
}

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
    #[error(transparent)]
    #[diagnostic(transparent)]
    Newer(#[from] crate::saved::NewerState),
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
    /// `ac/` opened once: existence checks resolve two path components instead of the whole path.
    ac_dir: std::sync::Arc<std::fs::File>,
    /// Trees this process has made or checked: one check per tree and run, not one per action
    /// that reads it (a kernel tree is ~80k files).
    checked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Digest>>>,
    /// A shared lock on `tmp/.users` held for the life of the process: while any kbuild holds
    /// it, `tmp/` may hold its work; when none does, what is there is left over (see `sweep`).
    _users: std::sync::Arc<std::fs::File>,
    /// The keys this process keeps from `kbuild cache gc` (see `holds`).
    holds: std::sync::Arc<holds::Holds>,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for dir in [
            "blobs", "ac", "keys", "trees", "state", "build", "logs", "tmp", "sums", "members",
        ] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        let root = root.canonicalize().map_err(io_err(root))?;
        let ac = root.join("ac");
        let ac_dir = std::sync::Arc::new(std::fs::File::open(&ac).map_err(io_err(&ac))?);
        let users = sweep::enter(&root.join("tmp"))?;
        let ledger = std::sync::Arc::new(crate::ledger::Ledger::open(&root)?);
        Ok(Cache {
            blobs: BlobStore::new(root.join("blobs"), ledger),
            root,
            ac_dir,
            checked: Default::default(),
            _users: std::sync::Arc::new(users),
            holds: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ledger of kbuild's own links in this cache: whoever links stored files notes them
    /// there.
    pub fn ledger(&self) -> &crate::ledger::Ledger {
        self.blobs.ledger()
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where the log of the run that made `key`'s entry is kept.
    pub fn log_of(&self, key: crate::key::ActionKey) -> PathBuf {
        self.root
            .join("logs")
            .join("keys")
            .join(format!("{key}.log"))
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
        let hex = blake3::Hash::from_bytes(*digest.as_bytes()).to_hex();
        let mut path = String::with_capacity(self.root.as_os_str().len() + dir.len() + 72);
        path.push_str(&self.root.to_string_lossy());
        for part in ["/", dir, "/", &hex[..2], "/", &hex[2..], ".json"] {
            path.push_str(part);
        }
        PathBuf::from(path)
    }

    /// Whether an action cache entry exists for `key`: one `fstatat`, the null-build fast path.
    pub fn has_entry(&self, key: ActionKey) -> bool {
        use std::os::fd::AsRawFd;
        let hex = blake3::Hash::from_bytes(*key.0.as_bytes()).to_hex();
        let mut rel = [0u8; 72];
        rel[..2].copy_from_slice(&hex.as_bytes()[..2]);
        rel[2] = b'/';
        rel[3..65].copy_from_slice(&hex.as_bytes()[2..]);
        rel[65..70].copy_from_slice(b".json");
        // rel[70] stays 0: the C string terminator.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `rel` is NUL-terminated, `stat` is written by the call before it is read.
        let rc = unsafe {
            libc::fstatat(
                self.ac_dir.as_raw_fd(),
                rel.as_ptr().cast(),
                stat.as_mut_ptr(),
                0,
            )
        };
        rc == 0
    }

    /// The output manifest cached for `key`, or `None` when there is none or it is unreadable.
    pub fn lookup(&self, key: ActionKey) -> Option<OutputManifest> {
        let bytes = std::fs::read(self.entry_path("ac", key.0)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The bytes of one file of the output cached for `key`, for a command that prints from a
    /// result it has (a test's verdict, an SBOM). The error says what is missing.
    pub fn read_output(&self, key: ActionKey, file: &str) -> Result<Vec<u8>, String> {
        let manifest =
            (self.lookup(key)).ok_or("the result is no longer in the cache: run again")?;
        let entry = (manifest.get(file)).ok_or_else(|| format!("the result has no {file}"))?;
        std::fs::read(self.blobs.path(entry.digest, entry.executable))
            .map_err(|e| format!("reading {file} from the cache: {e}"))
    }

    /// Records a successful action. The first writer wins: an entry, once visible, never changes,
    /// so a digest read from it earlier stays true. An entry that cannot be read (truncated,
    /// damaged) is no entry, and is replaced.
    pub fn store(&self, key: ActionKey, manifest: &OutputManifest) -> Result<(), CacheError> {
        let path = self.entry_path("ac", key.0);
        let bytes = serde_json::to_vec(manifest).expect("manifests serialise");
        write_once(&self.dir("tmp"), &path, &bytes)?;
        if self.lookup(key).is_none() {
            write_atomic(&path, &bytes)?;
        }
        Ok(())
    }

    /// Drops the entry for `key`, after its outputs were found corrupt or missing.
    pub fn evict(&self, key: ActionKey) {
        let _ = std::fs::remove_file(self.entry_path("ac", key.0));
        let _ = std::fs::remove_file(self.entry_path("origin", key.0));
    }

    /// Notes that the entry for `key` came from a remote cache.
    pub fn note_origin(&self, key: ActionKey, origin: &Origin) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(origin).expect("origins serialise");
        write_atomic(&self.entry_path("origin", key.0), &bytes)
    }

    /// Where the entry for `key` came from, when not from a build on this machine.
    pub fn origin(&self, key: ActionKey) -> Option<Origin> {
        let bytes = std::fs::read(self.entry_path("origin", key.0)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps the record behind `key`, so that a later miss of the same action can be explained.
    pub fn store_record(&self, key: ActionKey, record: &KeyRecord) -> Result<(), CacheError> {
        let path = self.entry_path("keys", key.0);
        if !path.is_file() {
            write_once(&self.dir("tmp"), &path, &record.encode())?;
        }
        Ok(())
    }

    /// Keeps the text of an input file that `why` explains in kernel terms (a config, a
    /// patch), by its digest; once per digest, and only if it is small.
    pub fn keep_input(&self, digest: Digest, file: &Path) -> Result<(), CacheError> {
        let dest = self.input_path(digest);
        if dest.is_file() {
            return Ok(());
        }
        // An input gone or grown since it was keyed is simply not kept: its key says so.
        match std::fs::read(file) {
            Ok(bytes) if bytes.len() <= 1 << 20 => write_once(&self.dir("tmp"), &dest, &bytes),
            _ => Ok(()),
        }
    }

    /// The text kept for an input's digest, if any.
    pub fn input_text(&self, digest: Digest) -> Option<String> {
        std::fs::read_to_string(self.input_path(digest)).ok()
    }

    fn input_path(&self, digest: Digest) -> PathBuf {
        self.dir("keys").join("inputs").join(digest.to_hex())
    }

    pub fn load_record(&self, key: ActionKey) -> Option<KeyRecord> {
        let bytes = std::fs::read(self.entry_path("keys", key.0)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Writes `bytes` to a temp file in `tmp` (the cache's, on the same filesystem) and publishes it
/// at `path` with a hard link, which fails rather than replacing an existing file: readers see
/// nothing or the whole file, and a killed writer leaves its temp file where the sweep finds it.
pub fn write_once(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().expect("cache paths have parents");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp).map_err(io_err(tmp))?;
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
