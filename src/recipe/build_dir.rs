//! Persistent build directories, kept between runs so the kernel's own make rebuilds
//! incrementally: one source tree per patched tree, shared by every target built from it, and
//! one object tree per target.
//!
//! A source tree is first filled with hard links to the cache's files: no copy of a 1.5 GB tree
//! per target, and no second copy on disk at all. Those links carry old mtimes, so a fill starts a
//! new *generation*, and an object tree built against another generation is emptied before use.
//! Within a generation a file whose content changes is replaced by a private copy with a fresh
//! mtime, so make sees exactly the changed files. Kernel builds with `O=` never write to the
//! source tree, which is what makes sharing its files with the cache sound.
//!
//! Locks: a target's directory is held exclusively while in use; the source tree is held shared
//! while make reads it and exclusively while it changes. A target's lock is always taken first.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Ctx, DepOutput, RecipeError, io};
use crate::action::BuildDirs;
use crate::cache::OutputEntry;
use crate::digest::Digest;
use crate::exec::Identity;

pub struct BuildDir {
    root: PathBuf,
    src: SrcDir,
    _lock: File,
}

impl BuildDir {
    pub fn open(ctx: &Ctx, dirs: &BuildDirs) -> Result<BuildDir, RecipeError> {
        let root = ctx.build_root.join(&dirs.obj);
        std::fs::create_dir_all(root.join("obj"))
            .map_err(io(format!("creating {}", root.display())))?;
        let lock = File::create(root.join("lock")).map_err(io("creating the build lock"))?;
        if lock.try_lock().is_err() {
            // Another run's, or the processes a killed run left behind, which inherited it.
            ctx.report.say(&format!(
                "kbuild: waiting for {}: another build (or the make of a killed one) still uses it",
                root.display()
            ));
            lock.lock().map_err(io("locking the build directory"))?;
        }
        let src = SrcDir::open(&ctx.build_root.join(&dirs.src))?;
        Ok(BuildDir {
            root,
            src,
            _lock: lock,
        })
    }

    pub fn src(&self) -> PathBuf {
        self.src.path.clone()
    }

    /// The directory's lock, for the make that builds in it to hold as well.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._lock)
    }

    pub fn obj(&self) -> PathBuf {
        self.root.join("obj")
    }

    /// The directory both trees live under: what `-ffile-prefix-map` strips from paths.
    pub fn prefix(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
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

    /// Drops what the kernel's make would keep from a build of another date: the outputs whose
    /// rules read `KBUILD_BUILD_TIMESTAMP` from the environment without recording it, so make
    /// does not remake them when only the date moves (a stable bump moves it with the tree).
    pub fn date(&self, source_date: u64) -> Result<(), RecipeError> {
        let path = self.root.join("source-date");
        let date = source_date.to_string();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(date.as_str()) {
            for dated in DATED {
                let _ = std::fs::remove_file(self.obj().join(dated));
            }
            std::fs::write(&path, date).map_err(io("writing the build's source date"))?;
        }
        Ok(())
    }

    /// Brings `src` to the content of `tree` and `obj/.config` to `config`, touching only what
    /// differs, and leaves the source tree locked shared until this `BuildDir` is dropped.
    pub fn prepare(
        &self,
        tree: &DepOutput,
        config: &Path,
        toolchain: &Identity,
    ) -> Result<(), RecipeError> {
        // A build interrupted from here on must not be taken as matching its stamp.
        self.clear_stamp();
        // make tracks neither the compiler's identity nor files that went back in time: objects
        // from another toolchain or another fill of the source tree are not to be trusted.
        let generation = format!("{}\n{}", self.src.bring_to(tree)?, toolchain.digest());
        let gen_path = self.root.join("generation");
        if std::fs::read_to_string(&gen_path).ok().as_deref() != Some(generation.as_str()) {
            let _ = std::fs::remove_dir_all(self.obj());
            std::fs::create_dir_all(self.obj()).map_err(io("recreating obj"))?;
            std::fs::write(&gen_path, &generation).map_err(io("writing the generation"))?;
        }
        let dest = self.obj().join(".config");
        let new = std::fs::read(config).map_err(io("reading the resolved config"))?;
        if std::fs::read(&dest).ok().as_deref() != Some(&new[..]) {
            std::fs::write(&dest, new).map_err(io("writing obj/.config"))?;
        }
        Ok(())
    }
}

/// Outputs of the kernel's own build dated by `KBUILD_BUILD_TIMESTAMP` in rules that do not
/// record it: the built-in initramfs (usr/gen_initramfs.sh sets its entries' mtimes) and the
/// in-kernel headers archive (kernel/gen_kheaders.sh, remade when its md5 of inputs changes).
/// Found by an incremental build after a stable bump that differed from a clean one.
const DATED: &[&str] = &[
    "usr/initramfs_data.cpio",
    "usr/initramfs_inc_data",
    "kernel/kheaders_data.tar.xz",
    "kernel/kheaders.md5",
];

/// A shared source tree and its bookkeeping files beside it (`<name>.lock`, `.index`,
/// `.generation`), outside the tree so the kernel never sees them.
struct SrcDir {
    path: PathBuf,
    lock: File,
}

impl SrcDir {
    fn open(path: &Path) -> Result<SrcDir, RecipeError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating the build root"))?;
        }
        let lock = File::create(sibling(path, "lock")).map_err(io("creating the source lock"))?;
        Ok(SrcDir {
            path: path.to_path_buf(),
            lock,
        })
    }

    fn generation_path(&self) -> PathBuf {
        sibling(&self.path, "generation")
    }

    /// What it holds (see [`made_identity`]), written last by a complete sync.
    fn tree_path(&self) -> PathBuf {
        sibling(&self.path, "tree")
    }

    fn index_path(&self) -> PathBuf {
        sibling(&self.path, "index")
    }

    fn read_index(&self) -> Index {
        std::fs::read(self.index_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Whether the tree holds `tree`: one small file, written last by a complete sync, names the
    /// tree and the cache's making of it. A blob found corrupt is replaced by making the cache's
    /// tree again, which changes its `.done` stamp, so the links here are re-placed to follow.
    fn holds(&self, tree: &DepOutput) -> bool {
        self.path.is_dir()
            && std::fs::read_to_string(self.tree_path()).ok() == Some(made_identity(tree))
    }

    /// Makes the tree hold `tree` and returns its generation, holding the lock shared.
    fn bring_to(&self, tree: &DepOutput) -> Result<String, RecipeError> {
        self.lock
            .lock_shared()
            .map_err(io("locking the source tree"))?;
        // Upgrading is unlock then lock, so between this sync and the shared lock taken again
        // the tree may change: another run syncs it, or a sync of another source tree linked
        // to the same cache tree moves its stamp (see `restamp`). A sync that finds every file
        // in place links nothing and moves nothing, so looking again settles it.
        for tried in 0..=SYNC_TRIES {
            if self.holds(tree) {
                return std::fs::read_to_string(self.generation_path())
                    .map_err(io("reading the generation"));
            }
            if tried == SYNC_TRIES {
                break;
            }
            let _ = self.lock.unlock();
            self.lock.lock().map_err(io("locking the source tree"))?;
            if !self.holds(tree) {
                self.sync(tree)?;
            }
            let _ = self.lock.unlock();
            self.lock
                .lock_shared()
                .map_err(io("locking the source tree"))?;
        }
        Err(RecipeError::failed(
            format!(
                "another kbuild run kept changing {} while this one waited for it",
                self.path.display()
            ),
            "run again once the other build has finished",
        ))
    }

    fn sync(&self, tree: &DepOutput) -> Result<(), RecipeError> {
        let tree_path = self.tree_path();
        let _ = std::fs::remove_file(&tree_path);
        let index_path = self.index_path();
        let mut index = self.read_index();
        // Until the index is written again the tree is in between: a sync cut short leaves none,
        // and the next one starts a new generation rather than trust files it did not finish.
        let _ = std::fs::remove_file(&index_path);
        let fresh = index.is_empty() || !self.path.is_dir();
        if fresh {
            index.clear();
            let _ = std::fs::remove_dir_all(&self.path);
            let generation = format!(
                "{}",
                std::time::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
                    .as_nanos()
            );
            std::fs::write(self.generation_path(), generation)
                .map_err(io("writing the generation"))?;
        }
        let wanted: BTreeMap<&str, &OutputEntry> = tree
            .manifest
            .entries()
            .iter()
            .filter_map(|e| e.path.strip_prefix("tree/").map(|rel| (rel, e)))
            .collect();
        for gone in index.keys().filter(|p| !wanted.contains_key(p.as_str())) {
            let _ = std::fs::remove_file(self.path.join(gone));
        }
        index.retain(|p, _| wanted.contains_key(p.as_str()));
        let mut linked_any = false;
        for (rel, entry) in wanted {
            let dest = self.path.join(rel);
            let from = tree.dir.join(&entry.path);
            let same = index.get(rel).is_some_and(|placed| {
                placed.digest == entry.digest && (placed.inode == 0 || placed.inode == inode(&from))
            }) && dest.symlink_metadata().is_ok();
            if !same {
                let how = if fresh { Place::Link } else { Place::Copy };
                let linked = place(&from, &dest, entry, how)?;
                linked_any |= linked;
                let inode = if linked { inode(&dest) } else { 0 };
                index.insert(
                    rel.to_string(),
                    Placed {
                        digest: entry.digest,
                        inode,
                    },
                );
            }
        }
        if linked_any {
            restamp(tree);
        }
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap_or_default())
            .map_err(io("writing the source index"))?;
        std::fs::write(&tree_path, made_identity(tree)).map_err(io("writing the tree digest"))
    }
}

/// How many times a source tree is synced before a run gives way to another that keeps
/// changing it.
const SYNC_TRIES: usize = 5;

type Index = BTreeMap<String, Placed>;

/// A file of the source tree: its content and, when it is a hard link into the cache, the inode.
#[derive(serde::Serialize, serde::Deserialize)]
struct Placed {
    digest: Digest,
    inode: u64,
}

/// A new hard link changes the ctime of the cache's file, and the cache takes a ctime after its
/// tree's stamp for a change: the next run would hash the whole tree again (1.3 GB, seconds when
/// it is no longer in the page cache). The tree was checked or made in this run (every
/// dependency is, before its action starts) and the links are this sync's own, so the stamp
/// moves to now. Failing to move it costs that hash, nothing else.
fn restamp(tree: &DepOutput) {
    let _ = std::fs::File::options()
        .write(true)
        .open(crate::cache::made_stamp(&tree.dir))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

/// The tree's digest and the identity of the cache's stamp for its making: inode and birth
/// time, which a making anew changes (a new file) and [`restamp`] does not, so a sync of one
/// source tree does not unsettle another linked to the same cache tree. Where the filesystem
/// keeps no birth time the mtime stands in, and `bring_to` syncs again when it moved.
fn made_identity(tree: &DepOutput) -> String {
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(crate::cache::made_stamp(&tree.dir)).map_or((0, 0), |m| {
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64);
        (
            m.ino(),
            born.unwrap_or(m.mtime_nsec() + m.mtime() * 1_000_000_000),
        )
    });
    format!("{}\n{}.{}", tree.digest(), made.0, made.1)
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    path.symlink_metadata().map(|m| m.ino()).unwrap_or(u64::MAX)
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{ext}"));
    path.with_file_name(name)
}

#[derive(Clone, Copy)]
enum Place {
    /// A hard link to the cache's file (a copy where the filesystem cannot link).
    Link,
    /// A private copy with a fresh mtime, so make rebuilds what depends on it.
    Copy,
}

/// Puts one file in place; true when it is a hard link to `from`.
fn place(from: &Path, dest: &Path, entry: &OutputEntry, how: Place) -> Result<bool, RecipeError> {
    let err = io(format!("updating {}", dest.display()));
    let run = || -> std::io::Result<bool> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::remove_file(dest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if let Some(link) = &entry.symlink {
            return std::os::unix::fs::symlink(link, dest).map(|_| false);
        }
        if let Place::Link = how
            && std::fs::hard_link(from, dest).is_ok()
        {
            return Ok(true);
        }
        std::fs::copy(from, dest).map(|_| false)
    };
    run().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::OutputManifest;

    /// A cache tree of a few files with its made stamp, as the cache leaves one.
    fn cache_tree(root: &Path) -> DepOutput {
        let dir = root.join("trees").join("t");
        let mut entries = Vec::new();
        for i in 0..20 {
            let rel = format!("tree/f{i}.c");
            let body = format!("int f{i};\n");
            std::fs::create_dir_all(dir.join("tree")).unwrap();
            std::fs::write(dir.join(&rel), &body).unwrap();
            entries.push(OutputEntry {
                path: rel,
                digest: Digest::of_bytes(body.as_bytes()),
                size: body.len() as u64,
                executable: false,
                symlink: None,
            });
        }
        std::fs::write(crate::cache::made_stamp(&dir), "").unwrap();
        DepOutput {
            dir,
            manifest: std::sync::Arc::new(OutputManifest::new(entries)),
        }
    }

    /// A build of another date loses the outputs make would not remake for the date alone;
    /// a build of the same date keeps them.
    #[test]
    fn a_new_source_date_drops_the_dated_outputs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("6.1.x/amd64");
        let cpio = root.join("obj/usr/initramfs_data.cpio");
        let other = root.join("obj/usr/initramfs_data.o");
        std::fs::create_dir_all(cpio.parent().unwrap()).unwrap();
        let bd = BuildDir {
            src: SrcDir::open(&tmp.path().join("6.1.x/src")).unwrap(),
            _lock: File::create(tmp.path().join("lock")).unwrap(),
            root,
        };
        let place = || {
            std::fs::write(&cpio, "cpio").unwrap();
            std::fs::write(&other, "o").unwrap();
        };
        place();
        bd.date(1_700_000_000).unwrap();
        assert!(
            !cpio.exists(),
            "no date recorded: the first build remakes it"
        );
        place();
        bd.date(1_700_000_000).unwrap();
        assert!(cpio.exists(), "the same date keeps it");
        bd.date(1_800_000_000).unwrap();
        assert!(
            !cpio.exists() && other.exists(),
            "a new date drops it, and only it"
        );
    }

    /// Source trees linked to one cache tree (`src` and `src-rt` when the rt patches change
    /// nothing) move its stamp whenever one of them is filled afresh; a run filling one while
    /// another fills the other must not take that for another run's change.
    #[test]
    fn source_trees_of_one_cache_tree_filled_at_once_all_settle() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = cache_tree(tmp.path());
        let build = tmp.path().join("build");
        std::thread::scope(|s| {
            for n in 0..4 {
                let (tree, build) = (&tree, &build);
                s.spawn(move || {
                    let path = build.join(format!("src-{n}"));
                    for round in 0..40 {
                        // Gone with its index: the next sync links afresh and restamps.
                        let _ = std::fs::remove_dir_all(&path);
                        let _ = std::fs::remove_file(sibling(&path, "index"));
                        let src = SrcDir::open(&path).unwrap();
                        let generation = src.bring_to(tree);
                        assert!(generation.is_ok(), "src-{n} round {round}: {generation:?}");
                    }
                });
            }
        });
    }
}
