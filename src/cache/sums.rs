//! The SHA1 and SHA256 of stored files, remembered by their BLAKE3 digest.
//!
//! An SBOM states both sums of every file of its image (SPDX 2.3 requires SHA1). Most of an
//! image's bytes do not change between its rebuilds: the source snapshot (`linux.tar.xz`, about
//! 200 MB) and the UAPI headers are the same for every config of a tree, so a one-option rebuild
//! hashed them twice over again on every run, beside the layer's compression, on the rebuild's
//! critical path. A file of a cached tree already has a name for its content, its BLAKE3 digest
//! in the output manifest (checked against the file when the tree is reused), so its other two
//! sums are a fact about that digest: computed once from the bytes and kept in
//! `sums/<ab>/<cdef…>`, written once like every entry of the cache. Nothing from another machine
//! is ever taken as such a fact: only this cache's own reads write them. `cache gc` drops the
//! sums of a blob it drops.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::Digest as _;

use super::Cache;
use super::shelf::Shelf;
use crate::digest::Digest;

/// A file's SHA1 and SHA256, as lowercase hex.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileSums {
    pub sha1: String,
    pub sha256: String,
}

impl FileSums {
    /// Both sums of the file at `path`, in one read.
    pub fn of_file(path: &Path) -> std::io::Result<FileSums> {
        let mut file = std::fs::File::open(path)?;
        let mut sha1 = sha1::Sha1::new();
        let mut sha256 = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha1.update(&buf[..n]);
            sha256.update(&buf[..n]);
        }
        Ok(FileSums {
            sha1: hex::encode(sha1.finalize()),
            sha256: hex::encode(sha256.finalize()),
        })
    }

    fn encode(&self) -> String {
        format!("{} {}\n", self.sha1, self.sha256)
    }

    /// A remembered line, or `None` for anything but two hex sums of the right lengths (a
    /// damaged file is computed again, never believed).
    fn decode(text: &str) -> Option<FileSums> {
        let (sha1, sha256) = text.strip_suffix('\n')?.split_once(' ')?;
        let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(sha1, 40) && hex(sha256, 64)).then(|| FileSums {
            sha1: sha1.to_ascii_lowercase(),
            sha256: sha256.to_ascii_lowercase(),
        })
    }
}

/// Where a recipe asks for the sums of its inputs' files.
#[derive(Clone, Debug)]
pub struct Sums {
    /// Remembers nothing for `kbuild verify`, whose rebuild must not take anything from the
    /// build it checks: every sum is computed from the bytes.
    shelf: Shelf,
}

impl Sums {
    /// Sums that are always computed, never remembered.
    pub fn uncached() -> Sums {
        Sums {
            shelf: Shelf::none(),
        }
    }

    /// The sums of `path`, a file of a cached tree whose content has the BLAKE3 `digest`.
    pub fn of(&self, digest: Digest, path: &Path) -> std::io::Result<FileSums> {
        let Some(kept) = self.shelf.record(digest) else {
            return FileSums::of_file(path);
        };
        if let Ok(text) = std::fs::read_to_string(&kept) {
            if let Some(sums) = FileSums::decode(&text) {
                return Ok(sums);
            }
            // Written once, so a damaged record would stay: it goes, and is written again.
            let _ = std::fs::remove_file(&kept);
        }
        let sums = FileSums::of_file(path)?;
        self.shelf.keep(&kept, sums.encode().as_bytes());
        Ok(sums)
    }

    /// Whether the record at `record` states the sums of `blob` (`cache verify`, which has
    /// checked the blob against its digest: a record damaged into other valid hex is caught
    /// only here).
    pub(super) fn is_sound(record: &Path, blob: &Path) -> bool {
        let kept = std::fs::read_to_string(record).ok();
        let Some(kept) = kept.as_deref().and_then(FileSums::decode) else {
            return false;
        };
        FileSums::of_file(blob).is_ok_and(|sums| sums == kept)
    }

    /// The digests whose sums are kept, with their files.
    pub(super) fn kept(&self) -> Vec<(Digest, PathBuf)> {
        self.shelf.kept()
    }
}

impl Cache {
    /// This cache's remembered sums (`Cache::open` made their directory).
    pub fn sums(&self) -> Sums {
        Sums {
            shelf: Shelf::of(self, "sums"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_remembered_by_digest_and_a_damaged_record_is_computed_again() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let sums = cache.sums();
        let file = root.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        let digest = Digest::of_bytes(b"abc");
        let first = sums.of(digest, &file).unwrap();
        // The well-known sums of "abc".
        assert_eq!(first.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            first.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Remembered: the file's bytes are no longer read.
        std::fs::write(&file, b"other").unwrap();
        assert_eq!(sums.of(digest, &file).unwrap(), first);
        assert_eq!(sums.kept().len(), 1);
        // A damaged record is not believed.
        let (_, kept) = &sums.kept()[0];
        std::fs::write(kept, "zz not-hex\n").unwrap();
        assert_eq!(
            sums.of(digest, &file).unwrap(),
            FileSums::of_file(&file).unwrap()
        );
        // Uncached sums always read the bytes.
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(Sums::uncached().of(digest, &file).unwrap(), first);
    }
}
