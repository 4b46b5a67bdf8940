//! What the cache's memos (`sums/`, `members/`) have in common: records named by a BLAKE3 digest
//! and sharded as `<ab>/<cdef…>`, each written once through `tmp/` like every cache entry, and
//! the choice of no directory at all, for a run that must remember nothing (`kbuild verify`).

use std::path::{Path, PathBuf};

use super::Cache;
use crate::digest::Digest;

#[derive(Clone, Debug)]
pub(super) struct Shelf {
    /// `None` remembers nothing.
    dir: Option<PathBuf>,
    tmp: PathBuf,
}

impl Shelf {
    /// The cache's directory `name` (`Cache::open` made it).
    pub(super) fn of(cache: &Cache, name: &str) -> Shelf {
        Shelf {
            dir: Some(cache.dir(name)),
            tmp: cache.dir("tmp"),
        }
    }

    /// A shelf that holds nothing and keeps nothing.
    pub(super) fn none() -> Shelf {
        Shelf {
            dir: None,
            tmp: PathBuf::new(),
        }
    }

    /// Where the record named `key` lives; `None` on a shelf that remembers nothing.
    pub(super) fn record(&self, key: Digest) -> Option<PathBuf> {
        let hex = key.to_hex();
        Some(self.dir.as_ref()?.join(&hex[..2]).join(&hex[2..]))
    }

    /// Writes the record at `path` once. Remembering is an optimisation: a failure to write
    /// only means computing again next time.
    pub(super) fn keep(&self, path: &Path, bytes: &[u8]) {
        let _ = super::write_once(&self.tmp, path, bytes);
    }

    /// Every record kept, with the digest it is named by.
    pub(super) fn kept(&self) -> Vec<(Digest, PathBuf)> {
        (self.dir.as_deref()).map_or_else(Vec::new, |dir| super::gc::sharded(dir, ""))
    }
}
