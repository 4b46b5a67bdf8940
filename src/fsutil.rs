//! Small filesystem helpers shared by the cache and the manifest memo.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file and rename), replacing what was there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .expect("paths written atomically have parents");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Links `to` to the file `from`; where a link is impossible (another filesystem), copies into a
/// temp file and publishes it without replacing anything. Never opens `to` for writing: if `to`
/// already exists it may itself be a link to `from` (a cache blob), and a copy would truncate it.
/// An existing `to` is an `AlreadyExists` error for the caller to judge.
pub fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    link_or_copy_known(from, to, None)
}

/// [`link_or_copy`] of a file whose content is known to be `digest` (a verified blob). The link
/// moves the file's ctime: the ledger learns the new one (see crate::ledger), with the digest
/// it vouched for before when none is given.
pub fn link_or_copy_known(
    from: &Path,
    to: &Path,
    digest: Option<crate::digest::Digest>,
) -> std::io::Result<()> {
    let digest = digest.or_else(|| crate::ledger::vouched_path(from));
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            crate::ledger::note(to, digest);
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

/// Where `root/rel` really is, when following its symlinks leads outside `root`; `None` when it
/// stays inside or does not exist (its absence is another check's concern). A workspace file that
/// is a symlink to elsewhere would make a build read, and key, what is not in the workspace.
pub fn leaves_root(root: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let real = std::fs::canonicalize(root.join(rel)).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    (!real.starts_with(&root)).then_some(real)
}

/// Replaces the regular file `path` with `bytes` in one rename, keeping its permissions (a
/// test.sh stays executable). The new file is written beside it first, so a failure leaves the
/// old one whole; a symlink at `path` is refused rather than followed.
pub fn replace_keeping_mode(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let dir = path.parent().expect("a file has a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(meta.permissions())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
