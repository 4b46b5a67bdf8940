//! Compressed pieces of image layers, remembered by what they hold.
//!
//! A kernel's layer is about 60 MB of tar (kernel-dev.tar alone is 50 MB), gzipped on every
//! rebuild although a one-option change leaves most of its bytes as they were: compressing
//! them again took two cores for a third of a second of every one-option rebuild. The layer's
//! gzip cuts its stream by content (`oci::gzip`), so those bytes give the same pieces again,
//! and the member each piece compressed to is kept here under a BLAKE3 key of the piece, the
//! compressing code and the level (`members/<ab>/<cdef…>`), written once like every entry.
//! A record holds the member's own BLAKE3 before it: a damaged record is removed and the
//! piece compressed again, never believed. Only this machine's compressions write here.
//! `cache gc` removes them all: they are a memo, and the next layer compresses once again.

use std::path::{Path, PathBuf};

use super::Cache;
use crate::digest::Digest;

/// Where the layer recipe finds and keeps compressed pieces.
#[derive(Clone, Debug)]
pub struct Members {
    /// `None` remembers nothing (`kbuild verify`, whose rebuild must compress every piece).
    dir: Option<PathBuf>,
    tmp: PathBuf,
}

impl Members {
    /// A memo that never remembers: every piece is compressed.
    pub fn uncached() -> Members {
        Members {
            dir: None,
            tmp: PathBuf::new(),
        }
    }

    fn record(&self, key: &Digest) -> Option<PathBuf> {
        let hex = key.to_hex();
        Some(self.dir.as_ref()?.join(&hex[..2]).join(&hex[2..]))
    }

    /// Every record kept, for `cache gc`.
    pub(super) fn kept(&self) -> Vec<(Digest, PathBuf)> {
        (self.dir.as_deref()).map_or_else(Vec::new, |dir| super::gc::sharded(dir, ""))
    }
}

/// Whether the record at `record` is whole (`cache verify`): its digest is its member's, and the
/// member inflates to bytes whose CRC-32 and length are those its trailer states.
pub(super) fn is_sound(record: &Path) -> bool {
    use std::io::Read as _;
    let Ok(bytes) = std::fs::read(record) else {
        return false;
    };
    let Some((digest, member)) = bytes.split_first_chunk::<32>() else {
        return false;
    };
    // The decoder checks the trailer against what it inflated.
    let mut inflated = Vec::new();
    Digest::of_bytes(member).as_bytes() == digest
        && flate2::read::GzDecoder::new(member)
            .read_to_end(&mut inflated)
            .is_ok()
}

impl crate::oci::gzip::Remember for Members {
    fn recall(&self, key: &Digest) -> Option<Vec<u8>> {
        let path = self.record(key)?;
        let mut bytes = std::fs::read(&path).ok()?;
        let sound = bytes.len() >= 32 && Digest::of_bytes(&bytes[32..]).as_bytes() == &bytes[..32];
        if !sound {
            // Written once, so a damaged record would stay: it goes, and is written again.
            let _ = std::fs::remove_file(&path);
            return None;
        }
        bytes.drain(..32);
        Some(bytes)
    }

    fn keep(&self, key: &Digest, member: &[u8]) {
        let Some(path) = self.record(key) else {
            return;
        };
        let mut bytes = Vec::with_capacity(32 + member.len());
        bytes.extend_from_slice(Digest::of_bytes(member).as_bytes());
        bytes.extend_from_slice(member);
        // Remembering is an optimisation: a failure to write only means compressing again.
        let _ = super::write_once(&self.tmp, &path, &bytes);
    }
}

impl Cache {
    /// This cache's compressed pieces (`Cache::open` made their directory).
    pub fn members(&self) -> Members {
        Members {
            dir: Some(self.dir("members")),
            tmp: self.dir("tmp"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::gzip::Remember;

    #[test]
    fn a_member_comes_back_as_kept_and_a_damaged_record_goes() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let members = cache.members();
        let key = Digest::of_bytes(b"piece");
        assert_eq!(members.recall(&key), None);
        members.keep(&key, b"member bytes");
        assert_eq!(members.recall(&key).as_deref(), Some(&b"member bytes"[..]));
        assert_eq!(members.kept().len(), 1);
        // One byte of the member flipped on disk: not believed, and removed.
        let (_, path) = members.kept().pop().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(members.recall(&key), None);
        assert!(!path.exists());
        // A memo that never remembers.
        Members::uncached().keep(&key, b"member bytes");
        assert_eq!(Members::uncached().recall(&key), None);
    }
}
