//! Unpacking a source tarball so that nothing in it can reach outside the tree, whatever its
//! entries do and in whatever order: the defences against hostile archives.
//!
//! - Every entry lies under the archive's one top directory, which is stripped; paths are
//!   relative, without `..`.
//! - Symlinks are created last, after every file and directory. While entries are written no
//!   symlink exists in the tree to be followed, and an entry whose path goes through (or
//!   replaces) a symlink entry is refused. Each symlink is then resolved against the finished
//!   tree, through any chain of other symlinks, and must stay inside it. Reading each link's
//!   text alone is not enough: two links that each look inside can together lead to `/`.
//! - A hard link may only name a regular file already extracted in the same tree.
//! - Devices and fifos are refused; set-id bits are dropped.
//! - Limits on the unpacked size, the number of entries and the length of a path stop a
//!   decompression bomb before it fills the disk (see [`Limits`]).

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// How much one source may unpack to. The defaults are about ten times what a kernel tree
/// needs (6.12: 1.5 GB in 90,000 entries); `KBUILD_UNPACK_MAX_BYTES` and
/// `KBUILD_UNPACK_MAX_ENTRIES` change them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Bytes in one path inside the tree (Linux's PATH_MAX).
    pub max_path: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_path: 4096,
        }
    }
}

pub const MAX_BYTES_VAR: &str = "KBUILD_UNPACK_MAX_BYTES";
pub const MAX_ENTRIES_VAR: &str = "KBUILD_UNPACK_MAX_ENTRIES";

impl Limits {
    /// The defaults, with the environment's overrides; a value that is not a number is an error.
    pub fn from_env() -> Result<Limits, String> {
        let mut limits = Limits::default();
        let read = |var: &str, slot: &mut u64| -> Result<(), String> {
            match std::env::var(var) {
                Ok(text) => {
                    *slot = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("{var}={text} is not a whole number"))?;
                    Ok(())
                }
                Err(_) => Ok(()),
            }
        };
        read(MAX_BYTES_VAR, &mut limits.max_bytes)?;
        read(MAX_ENTRIES_VAR, &mut limits.max_entries)?;
        Ok(limits)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("`{}`: {detail}", archive.display())]
    Io {
        archive: PathBuf,
        /// The error with every cause it wraps ("failed to unpack …: No space left on device").
        detail: String,
        source: std::io::Error,
    },
    #[error("`{}` is refused: its entry `{entry}` {why}", archive.display())]
    Hostile {
        archive: PathBuf,
        entry: String,
        why: String,
    },
    #[error("`{}` has no single top directory: {why}", archive.display())]
    NoTopDirectory { archive: PathBuf, why: String },
    /// The reader's own message is left out: it quotes the bytes it could not parse, and the
    /// file may be anything at all (a pinned path that holds a secret).
    #[error("`{}` is not a tar archive kbuild can read: a header is damaged, or the file is of another kind", archive.display())]
    NotATar { archive: PathBuf },
    #[error("`{}` unpacks to more than {limit} {what}", archive.display())]
    TooLarge {
        archive: PathBuf,
        what: &'static str,
        limit: u64,
        var: &'static str,
    },
}

impl UnpackError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            UnpackError::Io { source, .. } if is_disk_full(source) => {
                "the disk holding the cache is full: free space there (or move the cache with --cache-dir) and run again".into()
            }
            UnpackError::Io { .. } => {
                "the tarball is truncated or damaged, or the cache cannot be written: check both".into()
            }
            UnpackError::Hostile { .. } => {
                "the tarball is damaged or hostile: do not build it; check where its source came from".into()
            }
            UnpackError::NotATar { .. } => {
                "check that the source's URL and sha256 name the tarball you meant (.tar, .tar.gz or .tar.xz)".into()
            }
            UnpackError::NoTopDirectory { .. } => {
                "a kernel source tarball holds one directory (linux-6.6.71/); repack it that way".into()
            }
            UnpackError::TooLarge { var, .. } => format!(
                "if this really is a source tree, raise the limit: {var}=N (see doc/design.md)"
            ),
        }
    }
}

fn is_disk_full(error: &std::io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.raw_os_error() == Some(libc::ENOSPC)
                || io.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An error's text followed by the text of each cause it wraps, which the tar crate keeps out of
/// its own message.
fn with_causes(error: &std::io::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = e.source();
    }
    text
}

/// One unpacking, with what it has seen so far.
struct Unpacking<'a> {
    archive: &'a Path,
    dest: &'a Path,
    limits: &'a Limits,
    top: Option<OsString>,
    /// Symlinks to create once every other entry is written: (path in the tree, target).
    links: Vec<(PathBuf, PathBuf)>,
    link_paths: HashSet<PathBuf>,
    bytes: u64,
    entries: u64,
    newest: u64,
}

/// Unpacks `archive` into `dest` without its top directory; returns the newest entry mtime,
/// which is the source's date for reproducible builds. `dest` must not exist yet or be empty.
pub fn unpack(archive: &Path, dest: &Path, limits: &Limits) -> Result<u64, UnpackError> {
    let mut u = Unpacking {
        archive,
        dest,
        limits,
        top: None,
        links: Vec::new(),
        link_paths: HashSet::new(),
        bytes: 0,
        entries: 0,
        newest: 0,
    };
    let mut tar = tar::Archive::new(crate::archive::open(archive).map_err(|e| u.io(e))?);
    // Modes as written, less set-id and sticky bits: nothing in a source tree needs them.
    tar.set_preserve_permissions(false);
    std::fs::create_dir_all(dest).map_err(|e| u.io(e))?;
    for entry in tar.entries().map_err(|e| u.header(e))? {
        let entry = entry.map_err(|e| u.header(e))?;
        u.entry(entry)?;
    }
    u.make_links()?;
    Ok(u.newest)
}

impl Unpacking<'_> {
    fn io(&self, source: std::io::Error) -> UnpackError {
        UnpackError::Io {
            archive: self.archive.to_path_buf(),
            detail: with_causes(&source),
            source,
        }
    }

    /// An error reading the archive's headers: the system's errors (a full disk, a read error)
    /// as they are, the reader's complaints about the bytes without those bytes.
    fn header(&self, source: std::io::Error) -> UnpackError {
        if source.raw_os_error().is_some() {
            return self.io(source);
        }
        UnpackError::NotATar {
            archive: self.archive.to_path_buf(),
        }
    }

    fn hostile(&self, entry: &Path, why: impl Into<String>) -> UnpackError {
        UnpackError::Hostile {
            archive: self.archive.to_path_buf(),
            entry: entry.display().to_string(),
            why: why.into(),
        }
    }

    fn entry<R: std::io::Read>(&mut self, mut entry: tar::Entry<R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path().map_err(|e| self.header(e))?.into_owned();
        self.count(&raw, entry.size())?;
        let Some(rel) = self.relative(&raw)? else {
            if !kind.is_dir() {
                return Err(UnpackError::NoTopDirectory {
                    archive: self.archive.to_path_buf(),
                    why: format!("`{}` is a file at the top", raw.display()),
                });
            }
            return Ok(());
        };
        self.newest = self.newest.max(entry.header().mtime().unwrap_or(0));
        self.refuse_through_links(&raw, &rel)?;
        let target = self.dest.join(&rel);
        if kind.is_symlink() {
            let link = self.link_name(&entry, &raw)?;
            if !link_text_stays_inside(&rel, &link) {
                return Err(self.hostile(
                    &raw,
                    format!("is a symlink to `{}`, outside the tree", link.display()),
                ));
            }
            self.link_paths.insert(rel.clone());
            self.links.push((rel, link));
            return Ok(());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(e))?;
        }
        if kind.is_hard_link() {
            let link = self.link_name(&entry, &raw)?;
            return self.hard_link(&raw, &link, &target);
        }
        if !(kind.is_file() || kind.is_dir() || kind.is_contiguous()) {
            return Err(self.hostile(&raw, "is a device, fifo or other special file"));
        }
        entry.unpack(&target).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Counts the entry against the limits before anything of it is written.
    fn count(&mut self, raw: &Path, size: u64) -> Result<(), UnpackError> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        let too_large = |what, limit, var| UnpackError::TooLarge {
            archive: self.archive.to_path_buf(),
            what,
            limit,
            var,
        };
        if self.entries > self.limits.max_entries {
            return Err(too_large(
                "entries",
                self.limits.max_entries,
                MAX_ENTRIES_VAR,
            ));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(too_large("bytes", self.limits.max_bytes, MAX_BYTES_VAR));
        }
        if raw.as_os_str().len() > self.limits.max_path {
            return Err(self.hostile(
                raw,
                format!("has a path longer than {} bytes", self.limits.max_path),
            ));
        }
        Ok(())
    }

    /// The entry's path below the top directory, or `None` for the top directory itself.
    fn relative(&mut self, raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
        let mut parts = raw.components().filter(|c| *c != Component::CurDir);
        let top = match parts.next() {
            Some(Component::Normal(top)) => top.to_os_string(),
            // `./` itself, as `tar -C dir .` writes it.
            None => return Ok(None),
            _ => return Err(self.hostile(raw, "has an absolute path")),
        };
        match &self.top {
            None => self.top = Some(top.clone()),
            Some(first) if *first != top => {
                return Err(UnpackError::NoTopDirectory {
                    archive: self.archive.to_path_buf(),
                    why: format!(
                        "`{}` is not under `{}/`, where the first entry was",
                        raw.display(),
                        first.to_string_lossy()
                    ),
                });
            }
            Some(_) => {}
        }
        let mut rel = PathBuf::new();
        for part in parts {
            match part {
                Component::Normal(name) => rel.push(name),
                _ => return Err(self.hostile(raw, "has `..` or a root in its path")),
            }
        }
        Ok((!rel.as_os_str().is_empty()).then_some(rel))
    }

    /// No entry may be written through, or over, a symlink entry.
    fn refuse_through_links(&self, raw: &Path, rel: &Path) -> Result<(), UnpackError> {
        if let Some(link) = rel.ancestors().find(|a| self.link_paths.contains(*a)) {
            let why = if link == rel {
                "replaces a symlink of the same archive".to_string()
            } else {
                format!("lies behind the symlink `{}`", link.display())
            };
            return Err(self.hostile(raw, why));
        }
        Ok(())
    }

    fn link_name<R: std::io::Read>(
        &self,
        entry: &tar::Entry<R>,
        raw: &Path,
    ) -> Result<PathBuf, UnpackError> {
        entry
            .link_name()
            .map_err(|e| self.io(e))?
            .map(|l| l.into_owned())
            .ok_or_else(|| self.hostile(raw, "is a link without a target"))
    }

    /// A hard link names an archive path; it must be a regular file this archive wrote already.
    fn hard_link(&mut self, raw: &Path, link: &Path, target: &Path) -> Result<(), UnpackError> {
        let Some(source) = self.relative(link)? else {
            return Err(self.hostile(raw, "is a hard link to the top directory"));
        };
        self.refuse_through_links(raw, &source)?;
        let source = self.dest.join(source);
        match std::fs::symlink_metadata(&source) {
            Ok(meta) if meta.file_type().is_file() => {}
            _ => {
                let why = format!(
                    "is a hard link to `{}`, which is not a file of the tree",
                    link.display()
                );
                return Err(self.hostile(raw, why));
            }
        }
        std::fs::hard_link(&source, target).map_err(|e| self.io(e))
    }

    /// Creates the symlinks, then checks that each resolves inside the finished tree.
    fn make_links(&self) -> Result<(), UnpackError> {
        for (rel, target) in &self.links {
            let path = self.dest.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| self.io(e))?;
            }
            std::os::unix::fs::symlink(target, &path).map_err(|e| self.io(e))?;
        }
        for (rel, target) in &self.links {
            if !resolves_inside(self.dest, rel) {
                let why = format!(
                    "is a symlink to `{}`, which leads outside the tree through other symlinks",
                    target.display()
                );
                return Err(self.hostile(rel, why));
            }
        }
        Ok(())
    }
}

/// Whether a symlink at `rel` whose text is `target` stays inside the tree, read alone: a quick
/// first refusal; [`resolves_inside`] is the real check.
fn link_text_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = rel.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Whether the path `rel` resolves inside `root` when every symlink on the way is followed as
/// the kernel would, physically (`a/link/..` is the parent of the link's target), at most 40
/// times. A missing component resolves lexically from there on.
pub fn resolves_inside(root: &Path, rel: &Path) -> bool {
    let mut pending: VecDeque<OsString> = rel.iter().map(|c| c.to_os_string()).collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.to_str() {
            Some("..") => {
                if !resolved.pop() {
                    return false;
                }
                continue;
            }
            Some(".") | Some("") => continue,
            _ => {}
        }
        let candidate = resolved.join(&part);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) => {
                hops += 1;
                if hops > 40 || target.has_root() {
                    return false;
                }
                for component in target.iter().rev() {
                    pending.push_front(component.to_os_string());
                }
            }
            Err(_) => resolved = candidate,
        }
    }
    true
}

/// Every symlink under `tree` resolves inside it (after patches, which can create symlinks).
/// Returns the first one that does not.
pub fn escaping_link(tree: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(tree.join(&dir))? {
            let entry = entry?;
            let rel = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                if !resolves_inside(tree, &rel) {
                    return Ok(Some(rel));
                }
            } else if kind.is_dir() {
                dirs.push(rel);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_read_alone_may_not_climb_out() {
        assert!(link_text_stays_inside(
            Path::new("a/b/link"),
            Path::new("../c")
        ));
        assert!(!link_text_stays_inside(
            Path::new("a/link"),
            Path::new("../../etc")
        ));
        assert!(!link_text_stays_inside(
            Path::new("link"),
            Path::new("/etc")
        ));
    }

    #[test]
    fn chained_links_are_resolved_against_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("d0/d1")).unwrap();
        // Each looks inside when read alone; together they climb two levels above `tree`.
        std::os::unix::fs::symlink("../..", root.join("d0/d1/l")).unwrap();
        std::os::unix::fs::symlink("d0/d1/l/../..", root.join("x")).unwrap();
        assert!(link_text_stays_inside(
            Path::new("d0/d1/l"),
            Path::new("../..")
        ));
        assert!(link_text_stays_inside(
            Path::new("x"),
            Path::new("d0/d1/l/../..")
        ));
        assert!(resolves_inside(&root, Path::new("d0/d1/l")));
        assert!(!resolves_inside(&root, Path::new("x")));
        assert_eq!(escaping_link(&root).unwrap(), Some(PathBuf::from("x")));
        std::fs::remove_file(root.join("x")).unwrap();
        assert_eq!(escaping_link(&root).unwrap(), None);
    }

    #[test]
    fn a_link_loop_is_outside() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert!(!resolves_inside(dir.path(), Path::new("a")));
    }
}
