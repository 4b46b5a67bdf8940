//! Saved state: the files kbuild keeps between runs beside the cache's content, all under the
//! cache's `state/`. This module owns them: where each lives ([`State::path`]), and one format
//! for all of them, postcard behind a header that names what the file holds and the version
//! of its layout.
//!
//! Every such file only saves work: one that is absent, damaged or of an older layout is
//! made again (a full parse, lowering or hash). One written by a newer kbuild is an error
//! ([`NewerState`]): an older kbuild would otherwise overwrite what the newer one keeps, and
//! the two would undo each other's work run after run without saying why.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::digest::Digest;
use crate::fsutil::SaveError;

/// The first bytes of every saved-state file.
const MAGIC: &[u8; 13] = b"kbuild-state\n";

/// A file of saved state, by what it holds.
#[derive(Clone, Copy, Debug)]
pub enum State<'a> {
    /// What the last run of a workspace did, per action.
    LastRun { workspace: &'a Path },
    /// What a workspace's last successful run of `patterns` depended on: a null build's check.
    Fingerprint {
        workspace: &'a Path,
        patterns: &'a [String],
    },
    /// The lowered graph of a workspace's `patterns`.
    Lowered {
        workspace: &'a Path,
        patterns: &'a [String],
    },
    /// A workspace's parsed manifest.
    Manifest { workspace: &'a Path },
    /// File digests and program answers by stat data, for every workspace of the cache.
    Stat,
    /// The ctimes of kbuild's own links (see `ledger`).
    Links,
}

impl State<'_> {
    /// What the file holds, as its header names it, and the version of its layout: bumped
    /// whenever the type saved in it changes.
    fn format(self) -> (&'static str, u32) {
        match self {
            State::LastRun { .. } => ("last-run", 1),
            State::Fingerprint { .. } => ("fingerprint", 2),
            State::Lowered { .. } => ("lowered", 3),
            State::Manifest { .. } => ("manifest", 1),
            State::Stat => ("stat", 1),
            State::Links => ("links", 1),
        }
    }

    /// Where the file is, under the cache at `cache_root`. Per-workspace files are named by a
    /// digest of the workspace's path (and patterns), which never enters a key.
    pub fn path(self, cache_root: &Path) -> PathBuf {
        let (kind, _) = self.format();
        let dir = cache_root.join("state");
        let of = |text: String| Digest::of_bytes(text.as_bytes()).to_hex()[..16].to_string();
        let name = match self {
            State::LastRun { workspace } | State::Manifest { workspace } => {
                of(workspace.display().to_string())
            }
            State::Fingerprint {
                workspace,
                patterns,
            }
            | State::Lowered {
                workspace,
                patterns,
            } => of(format!("{}\n{}", workspace.display(), patterns.join("\n"))),
            State::Stat | State::Links => return dir.join(kind),
        };
        dir.join(format!("{name}.{kind}"))
    }

    /// Whether `path` is a file of this kind (gc finds every last run this way).
    pub fn is_kind(self, path: &Path) -> bool {
        path.extension().is_some_and(|e| e == self.format().0)
    }
}

/// A saved-state file of a layout newer than this kbuild reads.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(
    "{} was written by a newer kbuild ({kind} layout {found}; this kbuild reads layout {known})",
    path.display()
)]
#[diagnostic(help(
    "use the newer kbuild with this cache, or remove the file (kbuild makes it again)"
))]
pub struct NewerState {
    pub path: PathBuf,
    pub kind: &'static str,
    pub found: u32,
    pub known: u32,
}

/// The bytes of `value` saved as `state`.
pub fn encode<T: Serialize>(state: State, value: &T) -> Vec<u8> {
    let (kind, version) = state.format();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(format!("{kind} {version}\n").as_bytes());
    postcard::to_extend(value, out).expect("saved state serialises")
}

/// What `bytes` hold, if they are `state` in the layout this kbuild writes. `Ok(None)` for
/// anything else but a newer layout of the same kind.
pub fn decode<T: DeserializeOwned>(
    state: State,
    path: &Path,
    bytes: &[u8],
) -> Result<Option<T>, NewerState> {
    Ok(payload(state, path, bytes)?.and_then(|p| postcard::from_bytes(p).ok()))
}

/// The postcard bytes of `bytes`, if they are `state` in the layout this kbuild writes.
fn payload<'b>(state: State, path: &Path, bytes: &'b [u8]) -> Result<Option<&'b [u8]>, NewerState> {
    let (kind, known) = state.format();
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Ok(None);
    };
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let header = std::str::from_utf8(&rest[..end]).unwrap_or_default();
    let Some((found_kind, found)) = header.split_once(' ') else {
        return Ok(None);
    };
    let Ok(found) = found.parse::<u32>() else {
        return Ok(None);
    };
    if found_kind != kind || found < known {
        return Ok(None);
    }
    if found > known {
        return Err(NewerState {
            path: path.to_path_buf(),
            kind,
            found,
            known,
        });
    }
    Ok(Some(&rest[end + 1..]))
}

/// Reads `state` under the cache at `cache_root`: `Ok(None)` when there is nothing usable.
pub fn load<T: DeserializeOwned>(cache_root: &Path, state: State) -> Result<Option<T>, NewerState> {
    let path = state.path(cache_root);
    match std::fs::read(&path) {
        Ok(bytes) => decode(state, &path, &bytes),
        Err(_) => Ok(None),
    }
}

/// [`load`], when the value's first field (of type `H`) is `wanted`: a large state whose head
/// says it is stale (the kept graph of another manifest) is not decoded at all.
pub fn load_when<H: DeserializeOwned, T: DeserializeOwned>(
    cache_root: &Path,
    state: State,
    wanted: impl FnOnce(&H) -> bool,
) -> Result<Option<T>, NewerState> {
    let path = state.path(cache_root);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let Some(payload) = payload(state, &path, &bytes)? else {
        return Ok(None);
    };
    match postcard::take_from_bytes::<H>(payload) {
        Ok((head, _)) if wanted(&head) => Ok(postcard::from_bytes(payload).ok()),
        _ => Ok(None),
    }
}

/// Writes `value` as `state` under the cache at `cache_root`, atomically.
pub fn save<T: Serialize>(cache_root: &Path, state: State, value: &T) -> Result<(), SaveError> {
    let (kind, _) = state.format();
    let path = state.path(cache_root);
    crate::fsutil::write_atomic(&path, &encode(state, value)).map_err(SaveError::of(kind, &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_round_trips_and_other_layouts_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let value = vec![("compile".to_string(), 3u32)];
        let bytes = encode(State::Stat, &value);
        let back: Option<Vec<(String, u32)>> = decode(State::Stat, &path, &bytes).unwrap();
        assert_eq!(back, Some(value.clone()));
        // Another kind, an older layout, damage, text of before: nothing usable, no error.
        assert!(
            decode::<Vec<(String, u32)>>(State::Links, &path, &bytes)
                .unwrap()
                .is_none()
        );
        let older = [MAGIC.as_slice(), b"stat 0\n", &bytes[MAGIC.len() + 7..]].concat();
        assert!(
            decode::<Vec<(String, u32)>>(State::Stat, &path, &older)
                .unwrap()
                .is_none()
        );
        assert!(
            decode::<Vec<(String, u32)>>(State::Stat, &path, b"compile\tabc\n")
                .unwrap()
                .is_none()
        );
        let cut = &bytes[..bytes.len() - 2];
        assert!(
            decode::<Vec<(String, u32)>>(State::Stat, &path, cut)
                .unwrap()
                .is_none()
        );
        // A newer layout is an error that names the file and both layouts.
        let newer = [MAGIC.as_slice(), b"stat 9\n", &bytes[MAGIC.len() + 7..]].concat();
        let err = decode::<Vec<(String, u32)>>(State::Stat, &path, &newer).unwrap_err();
        assert_eq!((err.found, err.known), (9, 1));
        assert!(err.to_string().contains("newer kbuild"), "{err}");
    }

    #[test]
    fn a_state_is_decoded_only_when_its_head_is_wanted() {
        let cache = tempfile::tempdir().unwrap();
        let value = (Digest::of_bytes(b"manifest"), vec!["action".to_string()]);
        save(cache.path(), State::Stat, &value).unwrap();
        let head = value.0;
        let load = |want: Digest| {
            load_when::<Digest, (Digest, Vec<String>)>(cache.path(), State::Stat, |d| *d == want)
                .unwrap()
        };
        assert_eq!(load(head), Some(value.clone()));
        assert_eq!(load(Digest::of_bytes(b"another manifest")), None);
    }

    #[test]
    fn per_workspace_files_are_named_by_workspace_and_patterns() {
        let root = Path::new("/c");
        let (a, b) = (Path::new("/w/a"), Path::new("/w/b"));
        let p = ["//...".to_string()];
        let last = |w| State::LastRun { workspace: w }.path(root);
        assert_ne!(last(a), last(b));
        assert!(State::LastRun { workspace: a }.is_kind(&last(a)));
        let fp = State::Fingerprint {
            workspace: a,
            patterns: &p,
        }
        .path(root);
        assert!(fp.to_string_lossy().ends_with(".fingerprint"));
        assert_eq!(State::Stat.path(root), root.join("state/stat"));
    }
}
