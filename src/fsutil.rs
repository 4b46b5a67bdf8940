//! Small filesystem helpers shared by the cache, the workspace's saved files and the maintainer
//! commands; they know nothing of kbuild's own types.

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

/// A file of saved state that could not be written: the next run does more work, nothing else.
#[derive(Debug, thiserror::Error)]
#[error("kbuild: warning: cannot save {what} to {}: {source} (the next run will redo the work it saves)", path.display())]
pub struct SaveError {
    pub what: &'static str,
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

impl SaveError {
    /// `io::Error` of writing `path`, as a [`SaveError`] about `what`.
    pub fn of<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> SaveError + 'a {
        move |source| SaveError {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
