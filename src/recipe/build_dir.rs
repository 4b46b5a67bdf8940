//! Persistent build directories: one kernel tree and object tree per series, variant and arch,
//! kept between runs so the kernel's own make rebuilds incrementally.
//!
//! Only files whose content changed get new mtimes in the source copy, so make sees exactly
//! those changes. The directory is locked while in use; two kbuild processes take turns.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Ctx, DepOutput, RecipeError, io};
use crate::cache::OutputEntry;
use crate::digest::Digest;

pub struct BuildDir {
    root: PathBuf,
    _lock: File,
}

impl BuildDir {
    pub fn open(ctx: &Ctx, name: &str) -> Result<BuildDir, RecipeError> {
        let root = ctx.build_root.join(name);
        std::fs::create_dir_all(root.join("obj"))
            .map_err(io(format!("creating {}", root.display())))?;
        let lock = File::create(root.join("lock")).map_err(io("creating the build lock"))?;
        lock.lock().map_err(io("locking the build directory"))?;
        Ok(BuildDir { root, _lock: lock })
    }

    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    pub fn obj(&self) -> PathBuf {
        self.root.join("obj")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the object tree was last built from: tree and config digests.
    pub fn stamp(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join("stamp")).ok()
    }

    pub fn set_stamp(&self, stamp: &str) -> Result<(), RecipeError> {
        std::fs::write(self.root.join("stamp"), stamp).map_err(io("writing the build stamp"))
    }

    fn clear_stamp(&self) {
        let _ = std::fs::remove_file(self.root.join("stamp"));
    }

    /// Brings `src` to the content of `tree` and `obj/.config` to `config`, touching only what differs.
    pub fn prepare(&self, tree: &DepOutput, config: &Path) -> Result<(), RecipeError> {
        // A build interrupted from here on must not be taken as matching its stamp.
        self.clear_stamp();
        self.sync_src(tree)?;
        let dest = self.obj().join(".config");
        let new = std::fs::read(config).map_err(io("reading the resolved config"))?;
        if std::fs::read(&dest).ok().as_deref() != Some(&new[..]) {
            std::fs::write(&dest, new).map_err(io("writing obj/.config"))?;
        }
        Ok(())
    }

    fn sync_src(&self, tree: &DepOutput) -> Result<(), RecipeError> {
        let index_path = self.root.join("src-index.json");
        let mut index: BTreeMap<String, Digest> = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if index.is_empty() {
            let _ = std::fs::remove_dir_all(self.src());
        }
        let wanted: BTreeMap<&str, &OutputEntry> = tree
            .manifest
            .entries
            .iter()
            .filter_map(|e| e.path.strip_prefix("tree/").map(|rel| (rel, e)))
            .collect();
        for gone in index.keys().filter(|p| !wanted.contains_key(p.as_str())) {
            let _ = std::fs::remove_file(self.src().join(gone));
        }
        index.retain(|p, _| wanted.contains_key(p.as_str()));
        for (rel, entry) in wanted {
            let dest = self.src().join(rel);
            let same = index.get(rel) == Some(&entry.digest) && dest.symlink_metadata().is_ok();
            if !same {
                place(&tree.dir.join(&entry.path), &dest, entry)?;
                index.insert(rel.to_string(), entry.digest);
            }
        }
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap_or_default())
            .map_err(io("writing the source index"))
    }
}

/// Copies (a reflink where the filesystem can): the file gets a fresh mtime even when its content
/// existed before, and a build can never write through to a cache blob, nor a damaged blob into it.
fn place(from: &Path, dest: &Path, entry: &OutputEntry) -> Result<(), RecipeError> {
    let err = io(format!("updating {}", dest.display()));
    let run = || -> std::io::Result<()> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::remove_file(dest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if let Some(link) = &entry.symlink {
            return std::os::unix::fs::symlink(link, dest);
        }
        std::fs::copy(from, dest).map(|_| ())
    };
    run().map_err(err)
}
