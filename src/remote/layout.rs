//! Laying out a remote result's output tree on this machine. The tree comes from a server that
//! may be hostile, so its whole shape is checked before the first byte is written, and the
//! writing itself never follows a symlink: a tree that says `a -> /etc` and `a/passwd` must not
//! write `/etc/passwd`.
//!
//! The order makes that hold: every name is checked (unique, no file or symlink used as a
//! directory, every symlink resolving inside the tree when the links before it are followed as
//! the kernel would); directories and files are created first, each with `O_NOFOLLOW` and
//! `O_EXCL` under a directory kbuild created itself; the symlinks come last, when nothing is
//! written any more.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::reapi::TreeEntry;
use crate::cache::{OutputEntry, OutputManifest};

/// A regular file of a hit's output tree, with what its manifest says of it.
pub struct TreeFile<'a> {
    pub path: &'a str,
    pub digest: &'a re::Digest,
    pub want: &'a OutputEntry,
}

/// A symlink to make once every file is written.
pub struct TreeLink<'a> {
    pub path: &'a str,
    pub target: &'a str,
}

/// A checked output tree: what to write, and the symlinks to make after.
pub struct Layout<'a> {
    pub files: Vec<TreeFile<'a>>,
    pub links: Vec<TreeLink<'a>>,
}

/// Checks a hit's output tree against its manifest and against itself. Any entry the manifest
/// does not claim, or claims otherwise, a name given twice, a file or symlink that another
/// entry uses as a directory, or a symlink that leads out of the tree refuses the hit, with a
/// message naming the entry.
pub fn check<'a>(
    manifest: &'a OutputManifest,
    entries: &'a [TreeEntry],
) -> Result<Layout<'a>, String> {
    let claimed: HashMap<&str, &OutputEntry> = manifest
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    if claimed.len() != manifest.entries().len() {
        return Err("its manifest names one path twice".into());
    }
    if claimed.len() != entries.len() {
        return Err(format!(
            "the output tree holds {} entries, its manifest {}",
            entries.len(),
            claimed.len()
        ));
    }
    let mut layout = Layout {
        files: Vec::new(),
        links: Vec::new(),
    };
    let mismatch = |path: &str| format!("`{path}` differs from its manifest");
    let shape = check_shape(entries)?;
    for (path, digest, executable) in shape.files {
        let want = *claimed.get(path).ok_or_else(|| mismatch(path))?;
        if want.symlink.is_some() || want.executable != executable {
            return Err(mismatch(path));
        }
        layout.files.push(TreeFile { path, digest, want });
    }
    for link in shape.links {
        let want = *claimed.get(link.path).ok_or_else(|| mismatch(link.path))?;
        if want.symlink.as_deref() != Some(link.target) {
            return Err(mismatch(link.path));
        }
        layout.links.push(link);
    }
    Ok(layout)
}

/// A tree that is sound in itself: its files and the symlinks to make after them.
pub struct Shape<'a> {
    pub files: Vec<(&'a str, &'a re::Digest, bool)>,
    pub links: Vec<TreeLink<'a>>,
}

/// Checks a tree against itself: a name given twice, a file or symlink that another entry uses
/// as a directory, or a symlink that leads out of the tree refuses it, with a message naming
/// the entry.
pub fn check_shape(entries: &[TreeEntry]) -> Result<Shape<'_>, String> {
    let mut shape = Shape {
        files: Vec::new(),
        links: Vec::new(),
    };
    let mut leaves = HashSet::new();
    for entry in entries {
        let path = entry.path();
        if !leaves.insert(path) {
            return Err(format!("the output tree names `{path}` twice"));
        }
        match entry {
            TreeEntry::Symlink { path, target } => shape.links.push(TreeLink { path, target }),
            TreeEntry::File {
                path,
                digest,
                executable,
            } => shape.files.push((path, digest, *executable)),
        }
    }
    for path in &leaves {
        if let Some(dir) = ancestors(path).find(|dir| leaves.contains(dir)) {
            return Err(format!(
                "the output tree has `{dir}` as a file or symlink and as the directory of `{path}`"
            ));
        }
    }
    let links: HashMap<&str, &str> = shape.links.iter().map(|l| (l.path, l.target)).collect();
    for link in &shape.links {
        if !resolves_inside(&links, link.path) {
            return Err(format!(
                "the output tree's symlink `{}` -> `{}` leads outside the tree",
                link.path, link.target
            ));
        }
    }
    Ok(shape)
}

/// Space a remote result never takes on the cache's filesystem.
const RESERVE: u64 = 1 << 30;

/// The bytes the files of a checked tree declare (a negative size counts as none: its digest
/// check refuses it).
pub fn declared_bytes<'a>(digests: impl Iterator<Item = &'a re::Digest>) -> u64 {
    digests.fold(0u64, |total, d| {
        total.saturating_add(u64::try_from(d.size_bytes).unwrap_or(0))
    })
}

/// Refuses outputs of `total` bytes that would leave less than [`RESERVE`] free on the
/// filesystem of `dir`. Each file is bounded by its declared size as it streams, but a hostile
/// or broken server could declare files without end: they would fill the disk under every other
/// build here before the last digest check refused them.
pub fn check_room(dir: &Path, total: u64) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs writes into the zeroed struct it is given and reads a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "cannot read the free space of {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if total.saturating_add(RESERVE) > free {
        return Err(format!(
            "its files declare {total} bytes, more than the {free} bytes free on the cache's \
             filesystem (less 1 GiB kept free)"
        ));
    }
    Ok(())
}

/// `a/b/c` gives `a/b`, then `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (dir, _) = rest.rsplit_once('/')?;
        rest = dir;
        Some(dir)
    })
}

/// Whether the symlink at `path` resolves inside the tree, following the tree's other symlinks
/// physically (`a/link/..` is the parent of the link's target), at most 40 hops, as the kernel
/// would. A name the tree does not have resolves lexically from there on (a dangling link
/// inside the tree is harmless).
fn resolves_inside(links: &HashMap<&str, &str>, path: &str) -> bool {
    let mut pending: VecDeque<String> = path.split('/').map(String::from).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if resolved.pop().is_none() {
                    return false;
                }
                continue;
            }
            _ => {}
        }
        resolved.push(part);
        let here = resolved.join("/");
        if let Some(target) = links.get(here.as_str()) {
            hops += 1;
            if hops > 40 || target.starts_with('/') || target.is_empty() {
                return false;
            }
            resolved.pop();
            for component in target.split('/').rev() {
                pending.push_front(component.to_string());
            }
        }
    }
    true
}

/// Creates `dest`, which must not exist yet: everything of a hit is written under a directory
/// this run made, so nothing found there can redirect a write.
pub fn create_root(dest: &Path) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dest)
}

/// Opens `dest/path` for writing as a new file: its directories are created one by one, each
/// refused if it is anything but a directory (never a symlink), and the file itself is opened
/// with `O_CREAT | O_EXCL | O_NOFOLLOW`, so no symlink on the way or at the end is followed.
pub fn create_file(dest: &Path, path: &str) -> std::io::Result<(std::fs::File, PathBuf)> {
    create_parents(dest, path)?;
    let at = dest.join(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)?;
    Ok((file, at))
}

/// Creates the directories of `dest/path` one by one, each refused if it is anything but a
/// directory (never a symlink), and gives `dest/path`.
pub fn create_parents(dest: &Path, path: &str) -> std::io::Result<PathBuf> {
    let (dirs, _) = path.rsplit_once('/').unwrap_or(("", path));
    let mut at = dest.to_path_buf();
    for name in dirs.split('/').filter(|n| !n.is_empty()) {
        at.push(name);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "`{}` is not a directory kbuild made",
                    at.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(dest.join(path))
}

/// Makes the tree's symlinks, last, once every file is written.
pub fn make_links(dest: &Path, links: &[TreeLink<'_>]) -> std::io::Result<()> {
    for link in links {
        let (file, at) = create_file(dest, link.path)?;
        drop(file);
        std::fs::remove_file(&at)?;
        std::os::unix::fs::symlink(link.target, &at)?;
    }
    Ok(())
}

/// A writer that refuses to take more than `limit` bytes: a server that sends more than the
/// digest it names (or an endless stream) fills neither memory nor disk.
pub struct Limited<W: Write> {
    inner: W,
    left: u64,
    exceeded: bool,
}

impl<W: Write> Limited<W> {
    pub fn new(inner: W, limit: u64) -> Limited<W> {
        Limited {
            inner,
            left: limit,
            exceeded: false,
        }
    }

    /// Whether the stream went past the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("more bytes than the digest names"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn file(path: &str) -> (OutputEntry, TreeEntry) {
        let d = super::super::Function::Sha256.of_bytes(path.as_bytes());
        (
            OutputEntry {
                path: path.into(),
                digest: Digest::of_bytes(path.as_bytes()),
                size: path.len() as u64,
                executable: false,
                symlink: None,
            },
            TreeEntry::File {
                path: path.into(),
                digest: d,
                executable: false,
            },
        )
    }

    fn link(path: &str, target: &str) -> (OutputEntry, TreeEntry) {
        (
            OutputEntry {
                path: path.into(),
                digest: Digest::of_bytes(target.as_bytes()),
                size: 0,
                executable: false,
                symlink: Some(target.into()),
            },
            TreeEntry::Symlink {
                path: path.into(),
                target: target.into(),
            },
        )
    }

    fn checked(parts: Vec<(OutputEntry, TreeEntry)>) -> Result<(), String> {
        let (claimed, entries): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let manifest = OutputManifest::new(claimed);
        check(&manifest, &entries).map(|_| ())
    }

    #[test]
    fn a_symlink_used_as_a_directory_is_refused() {
        let e = checked(vec![link("a", "/etc"), file("a/passwd")]).unwrap_err();
        assert!(e.contains("`a` as a file or symlink"), "{e}");
        let e = checked(vec![file("a"), file("a/b")]).unwrap_err();
        assert!(e.contains("`a`"), "{e}");
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let (m, t) = file("a");
        let e = checked(vec![(m.clone(), t.clone()), (m, t)]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn symlinks_that_leave_the_tree_are_refused() {
        for (path, target) in [
            ("a", "/etc/passwd"),
            ("a", "../x"),
            ("d/a", "../../x"),
            ("a", ""),
        ] {
            let e = checked(vec![link(path, target)]).unwrap_err();
            assert!(e.contains("leads outside"), "{path} -> {target}: {e}");
        }
        // Chained: `d0/d1/l` is the root, so `x -> d0/d1/l/..` is the tree's parent.
        let e = checked(vec![link("d0/d1/l", "../.."), link("x", "d0/d1/l/..")]).unwrap_err();
        assert!(e.contains("`x`"), "{e}");
        // A loop leaves nowhere useful and is refused.
        assert!(checked(vec![link("a", "b"), link("b", "a")]).is_err());
    }

    #[test]
    fn ordinary_trees_pass() {
        checked(vec![
            file("lib/modules/6.1/modules.dep"),
            link("lib/modules/6.1/kernel", "../../../kernel"),
            file("kernel"),
            link("usr/lib/libx.so", "libx.so.1"),
            file("usr/lib/libx.so.1"),
            link("dangling", "nothing/here"),
        ])
        .unwrap();
    }

    #[test]
    fn files_are_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dest = dir.path().join("out");
        create_root(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("a")).unwrap();
        assert!(create_file(&dest, "a/b").is_err());
        std::os::unix::fs::symlink(outside.join("f"), dest.join("f")).unwrap();
        assert!(create_file(&dest, "f").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(create_root(&dest).is_err(), "the root must be new");
    }

    #[test]
    fn a_limited_writer_stops_at_its_limit() {
        let mut w = Limited::new(Vec::new(), 4);
        w.write_all(b"abcd").unwrap();
        assert!(w.write_all(b"e").is_err());
        assert!(w.exceeded());
    }
}
