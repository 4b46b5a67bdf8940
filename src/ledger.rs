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
//! before. The notes are the same facts for every cache on the machine; each cache keeps them in
//! `state/links`, read only when a check needs them and written at the end of a run.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;

/// A file's identity on this machine.
type Id = (u64, u64);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Note {
    ctime_ns: i128,
    digest: Option<Digest>,
}

#[derive(Default)]
struct Ledger {
    notes: HashMap<Id, Note>,
    /// The ledger files of the caches this process opened, and whether each was read yet.
    files: Vec<(PathBuf, bool)>,
    /// Notes were made since the files were read.
    dirty: bool,
}

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);

/// At most this many notes are kept, the newest: a dropped note costs one hash, nothing else.
const KEPT: usize = 1 << 16;

fn with<T>(f: impl FnOnce(&mut Ledger) -> T) -> T {
    let mut guard = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Ledger::default))
}

fn id(meta: &std::fs::Metadata) -> Id {
    (meta.dev(), meta.ino())
}

fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
}

/// The ledger file of a cache; it is read the first time a check needs it.
pub fn attach(path: PathBuf) {
    with(|l| {
        if !l.files.iter().any(|(p, _)| *p == path) {
            l.files.push((path, false));
        }
    });
}

/// The digest the ledger vouches for, if `meta`'s ctime is still the one kbuild's own last link
/// or unlink of the file left.
pub fn vouched(meta: &std::fs::Metadata) -> Option<Digest> {
    if !meta.is_file() {
        return None;
    }
    with(|l| {
        l.read_files();
        let note = l.notes.get(&id(meta))?;
        (note.ctime_ns == ctime_ns(meta)).then_some(note.digest)?
    })
}

/// What the ledger vouches for about the file at `path` now.
pub fn vouched_path(path: &Path) -> Option<Digest> {
    vouched(&std::fs::symlink_metadata(path).ok()?)
}

/// Notes that kbuild just linked or unlinked a name of the file at `path` (one of its names
/// afterwards). `digest` is its content where the caller knows it: the blob's verified name, or
/// what the ledger vouched for just before the operation; `None` records only the ctime.
pub fn note(path: &Path, digest: Option<Digest>) {
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
    with(|l| {
        let entry = l.notes.entry(id(&meta)).or_insert(fresh);
        // Two threads linking one blob: the later ctime is the one the file keeps.
        if fresh.ctime_ns >= entry.ctime_ns {
            *entry = fresh;
        }
        l.dirty = true;
    });
}

/// Writes the notes to every attached cache's ledger file, merged with what is there.
pub fn save() -> Result<(), crate::fsutil::SaveError> {
    with(|l| {
        if !l.dirty {
            return Ok(());
        }
        l.read_files();
        let mut notes: Vec<(Id, Note)> = l.notes.iter().map(|(k, v)| (*k, *v)).collect();
        if notes.len() > KEPT {
            notes.sort_by_key(|(_, n)| std::cmp::Reverse(n.ctime_ns));
            notes.truncate(KEPT);
        }
        let bytes = encode(&notes);
        l.dirty = false;
        // Without the file the next run hashes what it cannot vouch for: a warning.
        for (path, _) in &l.files {
            crate::fsutil::write_atomic(path, &bytes).map_err(|source| {
                crate::fsutil::SaveError {
                    what: "the ledger of kbuild's links",
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    })
}

impl Ledger {
    fn read_files(&mut self) {
        for (path, read) in &mut self.files {
            if *read {
                continue;
            }
            *read = true;
            let Ok(bytes) = std::fs::read(&*path) else {
                continue;
            };
            for (id, note) in decode(&bytes) {
                let entry = self.notes.entry(id).or_insert(note);
                if note.ctime_ns > entry.ctime_ns {
                    *entry = note;
                }
            }
        }
    }
}

/// One record per note: device, inode (u64 each), ctime (i128), a digest flag and 32 bytes.
const RECORD: usize = 8 + 8 + 16 + 1 + 32;

fn encode(notes: &[(Id, Note)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(notes.len() * RECORD);
    for ((dev, ino), note) in notes {
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&note.ctime_ns.to_le_bytes());
        match note.digest {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(d.as_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&[0; 32]);
            }
        }
    }
    out
}

/// A damaged file (cut short, say) yields the whole records before the damage.
fn decode(bytes: &[u8]) -> Vec<(Id, Note)> {
    bytes
        .chunks_exact(RECORD)
        .map(|r| {
            let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap());
            let ctime_ns = i128::from_le_bytes(r[16..32].try_into().unwrap());
            let digest = (r[32] == 1).then(|| Digest::from_bytes(r[33..65].try_into().unwrap()));
            ((u64_at(0), u64_at(8)), Note { ctime_ns, digest })
        })
        .collect()
}

/// Links `to` to the file `from`; where a link is impossible (another filesystem), copies into a
/// temp file and publishes it without replacing anything. Never opens `to` for writing: if `to`
/// already exists it may itself be a link to `from` (a cache blob), and a copy would truncate it.
/// An existing `to` is an `AlreadyExists` error for the caller to judge.
pub fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    link_or_copy_known(from, to, None)
}

/// [`link_or_copy`] of a file whose content is known to be `digest` (a verified blob). The link
/// moves the file's ctime: the ledger learns the new one (see this module), with the digest
/// it vouched for before when none is given.
pub fn link_or_copy_known(from: &Path, to: &Path, digest: Option<Digest>) -> std::io::Result<()> {
    let digest = digest.or_else(|| vouched_path(from));
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            note(to, digest);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_vouched_for_and_a_write_after_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"content").unwrap();
        let digest = Digest::of_bytes(b"content");
        let link = dir.path().join("link");
        std::fs::hard_link(&blob, &link).unwrap();
        note(&link, Some(digest));
        assert_eq!(
            vouched_path(&blob),
            Some(digest),
            "the same file by any name"
        );

        // Another link by someone else moves the ctime: no longer vouched.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&blob, dir.path().join("other")).unwrap();
        assert_eq!(vouched_path(&blob), None);

        note(&link, Some(digest));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&link, b"changed").unwrap();
        assert_eq!(vouched_path(&blob), None, "a write moves the ctime");
    }

    #[test]
    fn records_round_trip_and_a_cut_file_keeps_whole_records() {
        let notes = vec![
            (
                (1, 2),
                Note {
                    ctime_ns: 1_700_000_000_123_456_789,
                    digest: Some(Digest::of_bytes(b"x")),
                },
            ),
            (
                (3, 4),
                Note {
                    ctime_ns: -5,
                    digest: None,
                },
            ),
        ];
        let bytes = encode(&notes);
        assert_eq!(decode(&bytes), notes);
        assert_eq!(decode(&bytes[..RECORD + 10]), notes[..1]);
    }
}
