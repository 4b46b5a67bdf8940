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
