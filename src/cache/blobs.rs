//! The content-addressed blob store: one read-only file per distinct content and mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::digest::Digest;
use crate::ledger::Ledger;

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Learns the ctime of every link and unlink the store makes.
    ledger: Arc<Ledger>,
}

impl BlobStore {
    pub fn new(root: PathBuf, ledger: Arc<Ledger>) -> BlobStore {
        BlobStore { root, ledger }
    }

    /// The ledger of the cache the store belongs to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Executable and plain copies of the same bytes are separate blobs, because hard links
    /// share their mode.
    pub fn path(&self, digest: Digest, executable: bool) -> PathBuf {
        let hex = digest.to_hex();
        let name = if executable {
            format!("{}.x", &hex[2..])
        } else {
            hex[2..].to_string()
        };
        self.root.join(&hex[..2]).join(name)
    }

    /// Moves `file` (already hashed to `digest`) into the store. An existing blob is kept as it
    /// is, so that links to it elsewhere keep their inode and mtime; anything else in its place
    /// (a directory, a link, a file of another size) is replaced.
    pub fn adopt(&self, file: &Path, digest: Digest, executable: bool) -> std::io::Result<PathBuf> {
        let dest = self.path(digest, executable);
        match std::fs::symlink_metadata(&dest) {
            Ok(meta)
                if meta.is_file() && Some(meta.len()) == file.metadata().ok().map(|m| m.len()) =>
            {
                // `file` may be a link of the blob itself: the unlink moves its ctime.
                let before = self.ledger.vouched_path(&dest).filter(|d| *d == digest);
                std::fs::remove_file(file)?;
                self.ledger.note(&dest, before);
                return Ok(dest);
            }
            Ok(_) => remove_any(&dest)?,
            Err(_) => {}
        }
        std::fs::create_dir_all(dest.parent().expect("blob paths have parents"))?;
        let mode = if executable { 0o555 } else { 0o444 };
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(file, &dest)?;
        // Hashed to `digest` by the caller, and the action that wrote it has ended.
        self.ledger.note(&dest, Some(digest));
        Ok(dest)
    }

    /// Whether the blob holds the bytes its name promises.
    pub fn verify(&self, digest: Digest, executable: bool) -> bool {
        let path = self.path(digest, executable);
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
            && Digest::of_file(&path).is_ok_and(|d| d == digest)
    }

    pub fn remove(&self, digest: Digest, executable: bool) {
        let _ = remove_any(&self.path(digest, executable));
    }
}

/// Removes whatever is at `path`: a file, a link, or a whole directory.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl BlobStore {
    /// Hashes every blob; removes and returns the ones whose content does not match their name.
    /// A removed blob is rebuilt by the next run that needs it (its readers find it missing).
    pub fn verify_all(&self) -> std::io::Result<(usize, Vec<PathBuf>)> {
        use rayon::prelude::*;
        let mut paths = Vec::new();
        for shard in std::fs::read_dir(&self.root)? {
            for blob in std::fs::read_dir(shard?.path())? {
                paths.push(blob?.path());
            }
        }
        let bad: Vec<PathBuf> = paths
            .par_iter()
            .filter(|path| {
                let shard = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let expected = Digest::from_hex(&format!("{shard}{}", name.trim_end_matches(".x")));
                let file = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
                !file || expected.is_none() || Digest::of_file(path).ok() != expected
            })
            .cloned()
            .collect();
        for path in &bad {
            let _ = remove_any(path);
        }
        Ok((paths.len(), bad))
    }
}
