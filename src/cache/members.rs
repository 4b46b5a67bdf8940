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
use super::shelf::Shelf;
use crate::digest::Digest;

/// Where the layer recipe finds and keeps compressed pieces.
#[derive(Clone, Debug)]
pub struct Members {
    /// Remembers nothing for `kbuild verify`, whose rebuild must compress every piece.
    shelf: Shelf,
}

impl Members {
    /// A memo that never remembers: every piece is compressed.
    pub fn uncached() -> Members {
        Members {
            shelf: Shelf::none(),
        }
    }

    /// Every record kept, for `cache gc`.
    pub(super) fn kept(&self) -> Vec<(Digest, PathBuf)> {
        self.shelf.kept()
    }
}

/// The member a record holds, if the record is whole: its first 32 bytes are the member's
/// BLAKE3.
fn whole(record: &[u8]) -> Option<&[u8]> {
    let (digest, member) = record.split_first_chunk::<32>()?;
    (Digest::of_bytes(member).as_bytes() == digest).then_some(member)
}

/// Whether the record at `record` is whole (`cache verify`), and its member inflates to bytes
/// whose CRC-32 and length are those its trailer states.
pub(super) fn is_sound(record: &Path) -> bool {
    use std::io::Read as _;
    let Ok(bytes) = std::fs::read(record) else {
        return false;
    };
    // The decoder checks the trailer against what it inflated.
    let mut inflated = Vec::new();
    whole(&bytes).is_some_and(|member| {
        flate2::read::GzDecoder::new(member)
            .read_to_end(&mut inflated)
            .is_ok()
    })
}

impl crate::oci::gzip::Remember for Members {
    fn recall(&self, key: &Digest) -> Option<Vec<u8>> {
        let path = self.shelf.record(*key)?;
        let mut bytes = std::fs::read(&path).ok()?;
        if whole(&bytes).is_none() {
            // Written once, so a damaged record would stay: it goes, and is written again.
            let _ = std::fs::remove_file(&path);
            return None;
        }
        bytes.drain(..32);
        Some(bytes)
    }

    fn keep(&self, key: &Digest, member: &[u8]) {
        let Some(path) = self.shelf.record(*key) else {
            return;
        };
        let mut bytes = Vec::with_capacity(32 + member.len());
        bytes.extend_from_slice(Digest::of_bytes(member).as_bytes());
        bytes.extend_from_slice(member);
        self.shelf.keep(&path, &bytes);
    }
}

impl Cache {
    /// This cache's compressed pieces (`Cache::open` made their directory).
    pub fn members(&self) -> Members {
        Members {
            shelf: Shelf::of(self, "members"),
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
