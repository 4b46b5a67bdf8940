//! The ctimes kbuild's own links leave: a fact about a file that lets a later check trust it
//! without hashing it again.
//!
//! The cache checks a reused tree with `stat`: a file whose ctime is after the tree was made is
//! hashed again, as a write (or a write with its mtime set back) changes the ctime. But so does
//! every new hard link to the file, and the cache's own actions make them all the time: packaging
//! links `linux.tar.xz` and `kernel-headers.tar` out of their trees, an image links the source
//! layer, and storing an action's outputs unlinks their names. Each such link made the next run
//! hash those files again (hundreds of MB per one-option rebuild).
//!
//! So every link and unlink kbuild makes of a stored file is noted here: the file's identity
//! (device, inode), the ctime the operation left, and the content's digest when it is known to
//! be unchanged up to that operation (the blob's own name, or a note before whose ctime still
//! stands). A file whose ctime is still exactly the noted one has not been written since (a
//! write would move the ctime again), so its noted digest holds. Anything else is hashed as
//! before. The notes are facts about files of this machine; each cache keeps them in its saved state
//! (`saved::State::Links`), read only when a check needs them and written at the end of a
//! run. A cache owns its ledger (`Cache::ledger`); whoever links stored files is handed it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::SaveError;
use crate::saved::{NewerState, State};

/// A file's identity on this machine.
type Id = (u64, u64);

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
struct Note {
    ctime_ns: i128,
    digest: Option<Digest>,
}

#[derive(Default)]
struct Notes {
    by_file: HashMap<Id, Note>,
    /// The saved notes were read (they are read when a check first needs them).
    read: bool,
    /// Notes were made since they were read.
    dirty: bool,
}

/// The ledger of one cache.
pub struct Ledger {
    cache_root: PathBuf,
    notes: Mutex<Notes>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("cache_root", &self.cache_root)
            .finish()
    }
}

/// At most this many notes are kept, the newest: a dropped note costs one hash, nothing else.
const KEPT: usize = 1 << 16;

fn id(meta: &std::fs::Metadata) -> Id {
    (meta.dev(), meta.ino())
}

fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
}

impl Ledger {
    /// The ledger of the cache at `cache_root`. Only its header is read now (a ledger of a
    /// newer kbuild is an error); its notes when a check first needs them.
    pub fn open(cache_root: &Path) -> Result<Ledger, NewerState> {
        let path = State::Links.path(cache_root);
        if let Ok(bytes) = read_head(&path) {
            crate::saved::decode::<serde::de::IgnoredAny>(State::Links, &path, &bytes)?;
        }
        Ok(Ledger {
            cache_root: cache_root.to_path_buf(),
            notes: Mutex::default(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Notes) -> T) -> T {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if !notes.read {
            notes.read = true;
            let saved: Vec<(Id, Note)> = (crate::saved::load(&self.cache_root, State::Links))
                .ok()
                .flatten()
                .unwrap_or_default();
            for (id, note) in saved {
                let entry = notes.by_file.entry(id).or_insert(note);
                if note.ctime_ns > entry.ctime_ns {
                    *entry = note;
                }
            }
        }
        f(&mut notes)
    }

    /// The digest the ledger vouches for, if `meta`'s ctime is still the one kbuild's own last
    /// link or unlink of the file left.
    pub fn vouched(&self, meta: &std::fs::Metadata) -> Option<Digest> {
        if !meta.is_file() {
            return None;
        }
        self.with(|l| {
            let note = l.by_file.get(&id(meta))?;
            (note.ctime_ns == ctime_ns(meta)).then_some(note.digest)?
        })
    }

    /// What the ledger vouches for about the file at `path` now.
    pub fn vouched_path(&self, path: &Path) -> Option<Digest> {
        self.vouched(&std::fs::symlink_metadata(path).ok()?)
    }

    /// Notes that kbuild just linked or unlinked a name of the file at `path` (one of its names
    /// afterwards). `digest` is its content where the caller knows it: the blob's verified name,
    /// or what the ledger vouched for just before the operation; `None` records only the ctime.
    pub fn note(&self, path: &Path, digest: Option<Digest>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if !meta.is_file() {
            return;
        }
        let fresh = Note {
            ctime_ns: ctime_ns(&meta),
            digest,
        };
        self.with(|l| {
            let entry = l.by_file.entry(id(&meta)).or_insert(fresh);
            // Two threads linking one blob: the later ctime is the one the file keeps.
            if fresh.ctime_ns >= entry.ctime_ns {
                *entry = fresh;
            }
            l.dirty = true;
        });
    }

    /// Writes the notes, merged with what was saved. Without them the next run hashes what it
    /// cannot vouch for: a failure is the caller's warning.
    pub fn save(&self) -> Result<(), SaveError> {
        self.with(|l| {
            if !l.dirty {
                return Ok(());
            }
            let mut notes: Vec<(Id, Note)> = l.by_file.iter().map(|(k, v)| (*k, *v)).collect();
            if notes.len() > KEPT {
                notes.sort_by_key(|(_, n)| std::cmp::Reverse(n.ctime_ns));
                notes.truncate(KEPT);
            }
            l.dirty = false;
            crate::saved::save(&self.cache_root, State::Links, &notes)
        })
    }

    /// Links `to` to the file `from`; where a link is impossible (another filesystem), copies
    /// into a temp file and publishes it without replacing anything. Never opens `to` for
    /// writing: if `to` already exists it may itself be a link to `from` (a cache blob), and a
    /// copy would truncate it. An existing `to` is an `AlreadyExists` error for the caller.
    pub fn link_or_copy(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.link_or_copy_known(from, to, None)
    }

    /// [`Ledger::link_or_copy`] of a file whose content is known to be `digest` (a verified
    /// blob). The link moves the file's ctime: the ledger learns the new one, with the digest
    /// it vouched for before when none is given.
    pub fn link_or_copy_known(
        &self,
        from: &Path,
        to: &Path,
        digest: Option<Digest>,
    ) -> std::io::Result<()> {
        let digest = digest.or_else(|| self.vouched_path(from));
        match std::fs::hard_link(from, to) {
            Ok(()) => {
                self.note(to, digest);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
            Err(_) => {
                let dir = to.parent().expect("link targets have parents");
                let tmp = tempfile::NamedTempFile::new_in(dir)?;
                std::fs::copy(from, tmp.path())?;
                tmp.persist_noclobber(to).map(|_| ()).map_err(|e| e.error)
            }
        }
    }
}

/// The first bytes of a file: enough for a saved-state header.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_vouched_for_and_a_write_after_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"content").unwrap();
        let digest = Digest::of_bytes(b"content");
        let link = dir.path().join("link");
        std::fs::hard_link(&blob, &link).unwrap();
        ledger.note(&link, Some(digest));
        assert_eq!(
            ledger.vouched_path(&blob),
            Some(digest),
            "the same file by any name"
        );

        // Another link by someone else moves the ctime: no longer vouched.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&blob, dir.path().join("other")).unwrap();
        assert_eq!(ledger.vouched_path(&blob), None);

        ledger.note(&link, Some(digest));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&link, b"changed").unwrap();
        assert_eq!(ledger.vouched_path(&blob), None, "a write moves the ctime");
    }

    #[test]
    fn notes_survive_save_and_open() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"content").unwrap();
        let digest = Digest::of_bytes(b"content");
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.note(&blob, Some(digest));
        ledger.save().unwrap();
        let again = Ledger::open(dir.path()).unwrap();
        assert_eq!(again.vouched_path(&blob), Some(digest));
    }
}
