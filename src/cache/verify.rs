//! `kbuild cache verify`: checks the whole cache and repairs what it finds, so that afterwards no
//! corrupt byte can reach `out/` or a push. Repairing means forgetting: a bad blob, the action
//! cache entries that name it and the trees made from them are removed, and the next run that
//! needs them builds them again (Bazel's rule: what cannot be fully materialised is a miss).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::blobs::remove_any;
use super::{Cache, OutputManifest, made_stamp};
use crate::digest::Digest;

/// What `verify` checked, and every problem it found with what became of it.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub blobs: usize,
    pub entries: usize,
    pub trees: usize,
    /// Entries taken from a remote cache, and of those the ones a trusted key signed.
    pub remote: usize,
    pub signed: usize,
    /// Remembered sums and compressed layer pieces found sound.
    pub memos: usize,
    /// Each problem: the path, what was wrong, and whether removing it failed.
    pub problems: Vec<Problem>,
}

#[derive(Debug)]
pub struct Problem {
    pub path: PathBuf,
    pub what: String,
    /// Why it could not be removed; `None` once it is gone.
    pub unrepaired: Option<std::io::Error>,
}

impl VerifyReport {
    pub fn repaired_all(&self) -> bool {
        self.problems.iter().all(|p| p.unrepaired.is_none())
    }

    fn remove(&mut self, path: &Path, what: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            what: what.into(),
            unrepaired: remove_any(path).err(),
        });
    }
}

impl Cache {
    /// Checks blobs by content, action cache entries by their blobs, and materialised trees by
    /// their files; removes whatever is wrong, and what depends on it.
    pub fn verify(&self) -> std::io::Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let (blobs, bad) = self.blobs.verify_all()?;
        report.blobs = blobs;
        for path in bad {
            report.problems.push(Problem {
                unrepaired: std::fs::symlink_metadata(&path)
                    .ok()
                    .map(|_| std::io::Error::other("still there")),
                path,
                what: "blob does not hold what its name says".into(),
            });
        }
        let manifests = self.verify_entries(&mut report)?;
        self.verify_trees(&manifests, &mut report)?;
        self.verify_origins(&mut report)?;
        self.verify_memos(&mut report);
        Ok(report)
    }

    /// Memos are believed by every later run, so they are checked like entries: remembered
    /// sums against their (already verified) blob, compressed layer pieces against themselves.
    /// A wrong one is removed, and computed again when next needed.
    fn verify_memos(&self, report: &mut VerifyReport) {
        for (digest, record) in self.sums().kept() {
            let blob = [false, true]
                .map(|executable| self.blobs.path(digest, executable))
                .into_iter()
                .find(|p| p.is_file());
            match blob {
                None => report.remove(&record, "remembered sums of a blob that is gone"),
                Some(blob) if !super::Sums::is_sound(&record, &blob) => {
                    report.remove(&record, "remembered sums are not those of their blob")
                }
                Some(_) => report.memos += 1,
            }
        }
        for (_, record) in self.members().kept() {
            if super::members::is_sound(&record) {
                report.memos += 1;
            } else {
                report.remove(&record, "compressed layer piece is damaged");
            }
        }
    }

    /// Counts the entries another machine built; a note whose entry is gone is removed.
    fn verify_origins(&self, report: &mut VerifyReport) -> std::io::Result<()> {
        let (origins, entries) = (self.dir("origin"), self.dir("ac"));
        if !origins.is_dir() {
            return Ok(());
        }
        for path in files_under(&origins)? {
            let entry = path
                .strip_prefix(&origins)
                .map(|rel| entries.join(rel))
                .ok();
            let origin: Option<super::Origin> = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            match (entry.filter(|e| e.is_file()), origin) {
                (Some(_), Some(origin)) => {
                    report.remote += 1;
                    report.signed += usize::from(origin.signed_by.is_some());
                }
                (None, _) => report.remove(&path, "origin note of an entry that is gone"),
                (Some(_), None) => report.remove(&path, "origin note is unreadable"),
            }
        }
        Ok(())
    }

    /// Every `ac/` entry must parse and every blob it names must be there (after the blob check,
    /// a missing blob is a corrupt one). Returns the good manifests by output digest.
    fn verify_entries(
        &self,
        report: &mut VerifyReport,
    ) -> std::io::Result<HashMap<Digest, OutputManifest>> {
        let mut good = HashMap::new();
        for path in files_under(&self.dir("ac"))? {
            if path.extension().is_none_or(|e| e != "json") {
                report.remove(&path, "left over by an interrupted write");
                continue;
            }
            report.entries += 1;
            let manifest: Option<OutputManifest> = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let Some(manifest) = manifest else {
                report.remove(
                    &path,
                    "action cache entry is unreadable (truncated or damaged)",
                );
                continue;
            };
            let missing = manifest.entries().iter().find(|e| {
                e.symlink.is_none()
                    && !std::fs::symlink_metadata(self.blobs.path(e.digest, e.executable))
                        .is_ok_and(|m| m.is_file())
            });
            if let Some(missing) = missing {
                let what = format!(
                    "action cache entry names a missing or corrupt blob (`{}`)",
                    missing.path
                );
                report.remove(&path, what);
                self.forget_tree(manifest.digest(), report);
                continue;
            }
            good.insert(manifest.digest(), manifest);
        }
        let inputs = self.dir("keys").join("inputs");
        for path in files_under(&self.dir("keys"))? {
            if path.parent() == Some(inputs.as_path()) {
                // The kept texts of inputs (`why` diffs a config against them), named by the
                // blake3 of their content.
                let named = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Digest::from_hex);
                match named {
                    Some(digest) if Digest::of_file(&path).is_ok_and(|d| d == digest) => {}
                    Some(_) => report.remove(&path, "kept input text does not match its name"),
                    None => report.remove(&path, "left over by an interrupted write"),
                }
            } else if path.extension().is_none_or(|e| e != "json") {
                report.remove(&path, "left over by an interrupted write");
            }
        }
        Ok(good)
    }

    /// Every materialised tree whose manifest is known must hold exactly its files: a hard link
    /// to a verified blob is checked by inode, anything else by content.
    fn verify_trees(
        &self,
        manifests: &HashMap<Digest, OutputManifest>,
        report: &mut VerifyReport,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(self.dir("trees"))? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let Some(digest) = Digest::from_hex(&name) else {
                continue;
            };
            let Some(manifest) = manifests.get(&digest) else {
                continue;
            };
            report.trees += 1;
            if !made_stamp(&path).exists() {
                report.remove(&path, "tree was never completely made");
                continue;
            }
            if let Some(bad) = self.bad_tree_file(manifest, &path) {
                let _ = std::fs::remove_file(made_stamp(&path));
                report.remove(&path, format!("tree file `{bad}` does not match its blob"));
            }
        }
        Ok(())
    }

    fn bad_tree_file(&self, manifest: &OutputManifest, tree: &Path) -> Option<String> {
        use rayon::prelude::*;
        manifest
            .entries()
            .par_iter()
            .find_any(|e| {
                let file = tree.join(&e.path);
                if let Some(target) = &e.symlink {
                    return std::fs::read_link(&file).map_or(true, |t| t != Path::new(target));
                }
                let blob = std::fs::metadata(self.blobs.path(e.digest, e.executable));
                let linked = match (std::fs::symlink_metadata(&file), blob) {
                    (Ok(f), Ok(b)) => f.is_file() && f.ino() == b.ino() && f.dev() == b.dev(),
                    _ => false,
                };
                !linked && Digest::of_file(&file).map_or(true, |d| d != e.digest)
            })
            .map(|e| e.path.clone())
    }

    fn forget_tree(&self, digest: Digest, report: &mut VerifyReport) {
        let tree = self.tree_path(digest);
        if tree.exists() {
            let _ = std::fs::remove_file(made_stamp(&tree));
            report.remove(&tree, "tree of a removed action cache entry");
        }
    }
}

/// Every file two levels down (`ac/ab/cdef….json`), and stray files one level down.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir)? {
        let shard = shard?.path();
        if !shard.is_dir() {
            files.push(shard);
            continue;
        }
        for file in std::fs::read_dir(&shard)? {
            files.push(file?.path());
        }
    }
    Ok(files)
}
