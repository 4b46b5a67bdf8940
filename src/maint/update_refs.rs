//! `kbuild update-refs`: LinuxKit's `make update-kernel-yamls`. In the YAML, Dockerfile, Makefile
//! and test.sh files git tracks, a reference with a hash (`linuxkit/kernel:6.6.13-<hash>…`) moves
//! to the newest version and hash of its series; a bare one (`linuxkit/kernel:6.6.13…`) floats to
//! the highest kernel overall. Variant (`-dbg`), tool (`kernel-perf`) and arch suffixes are kept.
//! Nothing else in a file changes, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::label::{TargetKind, all_targets};
use crate::model::Model;
use crate::statcache::StatCache;

/// What a reference may move to: per image kind, the current version and hash of each series.
pub struct Latest {
    /// (kind, "M.m") → (version, hash).
    by_series: BTreeMap<(Kind, (u64, u64)), (semver::Version, String)>,
}

/// A reference's image kind: `kernel` plain or with a variant set, or a tool image.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Kernel(String),
    Tool(String),
}

impl Latest {
    pub fn of(model: &Model, stat: &mut StatCache) -> Result<Latest, crate::tags::TagError> {
        let mut by_series = BTreeMap::new();
        for label in all_targets(model) {
            let kind = match &label.kind {
                TargetKind::Kernel(set) => Kind::Kernel(set.name()),
                TargetKind::Tool(tool) => Kind::Tool(tool.clone()),
            };
            let version = model
                .series(&label.series)
                .expect("targets come from the model")
                .version
                .clone();
            if let std::collections::btree_map::Entry::Vacant(slot) =
                by_series.entry((kind, (version.major, version.minor)))
            {
                slot.insert((
                    version,
                    crate::tags::group_hash(model, &label, stat, &|t| {
                        crate::plan::lower(model, t)
                    })?,
                ));
            }
        }
        Ok(Latest { by_series })
    }

    /// Where a reference of `kind` at `version` moves: same series with a hash, else the highest.
    fn target(
        &self,
        kind: &Kind,
        version: &semver::Version,
        with_hash: bool,
    ) -> Option<&(semver::Version, String)> {
        if with_hash {
            return self
                .by_series
                .get(&(kind.clone(), (version.major, version.minor)));
        }
        self.by_series
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .max_by(|a, b| a.0.cmp(&b.0))
    }
}

/// One reference found in a text, by byte range.
#[derive(Debug, PartialEq, Eq)]
struct Ref {
    start: usize,
    end: usize,
    kind: Kind,
    version: semver::Version,
    hash: Option<String>,
    /// `-amd64`, or empty.
    arch: String,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

/// Docker Hub's other names for its own repositories: `docker.io/linuxkit/kernel` is
/// `linuxkit/kernel`.
const HUB_PREFIXES: [&[u8]; 3] = [b"docker.io/", b"index.docker.io/", b"registry-1.docker.io/"];

/// Whether the reference at `start` stands alone on its left: nothing glued to it, or only a
/// Docker Hub prefix that itself stands alone.
fn stands_alone(bytes: &[u8], start: usize) -> bool {
    let glued = |at: usize| at > 0 && (is_word(bytes[at - 1]) || bytes[at - 1] == b'/');
    if !glued(start) {
        return true;
    }
    HUB_PREFIXES
        .iter()
        .any(|prefix| bytes[..start].ends_with(prefix) && !glued(start - prefix.len()))
}

/// Where the run of word characters and `also` starting at `from` ends.
fn run_end(text: &[u8], from: usize, also: &[u8]) -> usize {
    (from..text.len())
        .find(|&i| !(is_word(text[i]) || also.contains(&text[i])))
        .unwrap_or(text.len())
}

/// A reference the scan found: one to move, or one pinned by a digest (`…@sha256:…`), which
/// names one image and is left alone.
enum Found {
    Movable(Ref),
    Pinned { start: usize, end: usize },
}

/// Finds `<org>/<image>[-<tool>]:<M.m.p>[-<variant>][-<hash>][-<arch>]` references that stand
/// alone: a reference glued to more word characters on either side is not one. The text is
/// bytes: a file that is not UTF-8 elsewhere is still scanned, and kept byte for byte.
fn scan(text: &[u8], org: &str, image: &str, variants: &[String], tools: &[String]) -> Vec<Found> {
    let needle = format!("{org}/{image}");
    let needle = needle.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].windows(needle.len()).position(|w| w == needle) {
        let start = from + pos;
        from = start + needle.len();
        if !stands_alone(text, start) {
            continue;
        }
        let end = run_end(text, from, b":");
        // Word characters and `:` only: ASCII, so UTF-8.
        let rest = std::str::from_utf8(&text[from..end]).expect("ASCII");
        if let Some(r) = parse(rest, variants, tools) {
            if text.get(end) == Some(&b'@') {
                let end = run_end(text, end, b":@");
                found.push(Found::Pinned { start, end });
            } else {
                found.push(Found::Movable(Ref { start, end, ..r }));
            }
        }
    }
    found
}

/// Parses what follows `<org>/<image>`; `None` unless every part is understood.
fn parse(rest: &str, variants: &[String], tools: &[String]) -> Option<Ref> {
    let (image_suffix, tag) = rest.split_once(':')?;
    let tool = match image_suffix {
        "" => None,
        s => Some(
            s.strip_prefix('-')
                .filter(|t| tools.iter().any(|x| x == t))?
                .to_string(),
        ),
    };
    let (version, mut rest) = match tag.find('-') {
        Some(i) => (&tag[..i], &tag[i..]),
        None => (tag, ""),
    };
    let version = semver::Version::parse(version).ok()?;
    let mut variant = String::new();
    // The longest declared variant set that the tag continues with (`-rt-dbg` before `-rt`).
    if tool.is_none()
        && let Some(v) = variants
            .iter()
            .filter(|v| rest.starts_with(&format!("-{v}")))
            .max_by_key(|v| v.len())
        && rest[v.len() + 1..].is_empty() | rest[v.len() + 1..].starts_with('-')
    {
        variant = v.clone();
        rest = &rest[v.len() + 1..];
    }
    let mut hash = None;
    if rest.len() >= 41
        && rest[1..41].bytes().all(|b| b.is_ascii_hexdigit())
        && (rest.len() == 41 || rest.as_bytes()[41] == b'-')
    {
        hash = Some(rest[1..41].to_string());
        rest = &rest[41..];
    }
    let arch = match rest {
        "" | "-amd64" | "-arm64" | "-riscv64" => rest.to_string(),
        _ => return None,
    };
    let kind = match tool {
        Some(t) => Kind::Tool(t),
        None => Kind::Kernel(variant),
    };
    Some(Ref {
        start: 0,
        end: 0,
        kind,
        version,
        hash,
        arch,
    })
}

fn render(
    org: &str,
    image: &str,
    kind: &Kind,
    version: &semver::Version,
    hash: Option<&str>,
    arch: &str,
) -> String {
    let (image, variant) = match kind {
        Kind::Tool(t) => (format!("{image}-{t}"), String::new()),
        Kind::Kernel(v) if v.is_empty() => (image.to_string(), String::new()),
        Kind::Kernel(v) => (image.to_string(), format!("-{v}")),
    };
    let hash = hash.map(|h| format!("-{h}")).unwrap_or_default();
    format!("{org}/{image}:{version}{variant}{hash}{arch}")
}

/// One change: where, and the old and new reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub file: String,
    pub line: usize,
    pub old: String,
    pub new: String,
}

/// A digest-pinned reference left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub file: String,
    pub line: usize,
    pub reference: String,
}

/// What `rewrite` made of one file.
pub struct Rewritten {
    pub bytes: Vec<u8>,
    pub changes: Vec<Change>,
    pub pinned: Vec<Pinned>,
}

/// The text with every reference moved, the changes made and the pinned references kept.
pub fn rewrite(file: &str, text: &[u8], model: &Model, latest: &Latest) -> Rewritten {
    let org = &model.defaults.org;
    let image = &model.defaults.image;
    let mut variants: Vec<String> = model
        .series
        .iter()
        .flat_map(|s| s.variants.iter().map(|v| v.name()))
        .collect();
    variants.sort();
    variants.dedup();
    let tools: Vec<String> = model.tools.iter().map(|t| t.name.clone()).collect();
    let line_of = |at: usize| text[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let ascii = |from: usize, to: usize| String::from_utf8_lossy(&text[from..to]).into_owned();
    let mut out = Rewritten {
        bytes: Vec::with_capacity(text.len()),
        changes: Vec::new(),
        pinned: Vec::new(),
    };
    let mut last = 0;
    for found in scan(text, org, image, &variants, &tools) {
        let r = match found {
            Found::Movable(r) => r,
            Found::Pinned { start, end } => {
                out.pinned.push(Pinned {
                    file: file.to_string(),
                    line: line_of(start),
                    reference: ascii(start, end),
                });
                continue;
            }
        };
        let Some((version, hash)) = latest.target(&r.kind, &r.version, r.hash.is_some()) else {
            continue;
        };
        let new = render(
            org,
            image,
            &r.kind,
            version,
            r.hash.as_ref().map(|_| hash.as_str()),
            &r.arch,
        );
        let old = ascii(r.start, r.end);
        if new != old {
            out.changes.push(Change {
                file: file.to_string(),
                line: line_of(r.start),
                old,
                new: new.clone(),
            });
            out.bytes.extend_from_slice(&text[last..r.start]);
            out.bytes.extend_from_slice(new.as_bytes());
            last = r.end;
        }
    }
    out.bytes.extend_from_slice(&text[last..]);
    out
}

/// Whether `path` is a file update-refs looks at.
pub fn wanted(path: &str) -> bool {
    if path.split('/').any(|part| part == "vendor") {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    [".yml", ".yaml", ".yml.in", ".yaml.in"]
        .iter()
        .any(|s| name.ends_with(s))
        || matches!(name, "Dockerfile" | "Makefile" | "test.sh")
}

/// The files update-refs rewrites, and those it leaves with the reason.
#[derive(Debug, Default)]
pub struct Selection {
    pub files: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

/// The files git tracks under `paths` (relative to `root`), or every file when `root` is in no
/// git work tree. A path that does not exist or lies outside `root` is an error, never an empty
/// or a wider search. A symlink is never followed (a tracked link could name any file of the
/// machine), and a file named on the command line that is not rewritten is said so.
pub fn tracked_files(root: &Path, paths: &[PathBuf]) -> Result<Selection, String> {
    let top = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let mut relative = Vec::new();
    for path in paths {
        let at = top.join(path);
        let at = at.canonicalize().map_err(|_| {
            format!(
                "{}: no such file or directory in the workspace",
                path.display()
            )
        })?;
        let inside = at.strip_prefix(&top).map_err(|_| {
            format!(
                "{} is outside the workspace {}: name paths inside it",
                path.display(),
                top.display()
            )
        })?;
        relative.push(inside.to_path_buf());
    }
    let mut selection = Selection::default();
    let candidates = match in_git_work_tree(&top) {
        true => git_files(&top, &relative)?,
        false => {
            let starts = if relative.is_empty() {
                vec![PathBuf::new()]
            } else {
                relative.clone()
            };
            let mut files = Vec::new();
            for start in starts {
                walk(&top, &start, &mut files, &mut selection.skipped)
                    .map_err(|e| format!("{}: {e}", top.join(&start).display()))?;
            }
            files
        }
    };
    for file in candidates {
        if !wanted(&file) {
            continue;
        }
        match std::fs::symlink_metadata(top.join(&file)) {
            Ok(meta) if meta.file_type().is_symlink() => selection.skipped.push((
                file,
                "a symlink: update-refs rewrites regular files only, never what a link names"
                    .into(),
            )),
            _ => selection.files.push(file),
        }
    }
    // A file named on the command line that is not among them: say why.
    for rel in &relative {
        let name = rel.to_string_lossy().into_owned();
        let is_file = std::fs::symlink_metadata(top.join(rel)).is_ok_and(|m| m.is_file());
        let listed =
            selection.files.contains(&name) || selection.skipped.iter().any(|s| s.0 == name);
        if is_file && !listed {
            let why = if !wanted(&name) {
                "not a YAML, Dockerfile, Makefile or test.sh file".to_string()
            } else {
                "not tracked by git (new, ignored, or in a submodule): `git add` it first".into()
            };
            selection.skipped.push((name, why));
        }
    }
    Ok(selection)
}

/// Whether `dir` is inside a git work tree (its own `.git`, or a parent repository's).
fn in_git_work_tree(dir: &Path) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"))
}

/// What git tracks under `relative` (all of `top` when empty), relative to `top`.
fn git_files(top: &Path, relative: &[PathBuf]) -> Result<Vec<String>, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(top)
        .args(["ls-files", "-z", "--"])
        .args(relative)
        .output()
        .map_err(|e| format!("git ls-files: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git ls-files: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect())
}

/// Every file under `rel`, never through a symlink (a link to `..` or out of the workspace
/// would walk forever or elsewhere): a link is noted as skipped.
fn walk(
    root: &Path,
    rel: &Path,
    out: &mut Vec<String>,
    skipped: &mut Vec<(String, String)>,
) -> std::io::Result<()> {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path)?;
    if meta.file_type().is_symlink() {
        if wanted(&rel.to_string_lossy()) || std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            skipped.push((
                rel.to_string_lossy().into_owned(),
                "a symlink: not followed".into(),
            ));
        }
        return Ok(());
    }
    if meta.is_file() {
        out.push(rel.to_string_lossy().into_owned());
        return Ok(());
    }
    for entry in std::fs::read_dir(&path)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || name == "cache" || name == "target" {
            continue;
        }
        walk(root, &rel.join(name), out, skipped)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn parses_every_part_or_nothing() {
        let variants = vec!["dbg".to_string(), "rt".to_string(), "rt-dbg".to_string()];
        let tools = vec!["perf".to_string()];
        let hash = "a".repeat(40);
        let r = parse(&format!(":6.6.13-rt-dbg-{hash}-arm64"), &variants, &tools).unwrap();
        assert_eq!(
            (r.kind, r.version, r.hash, r.arch.as_str()),
            (
                Kind::Kernel("rt-dbg".into()),
                v("6.6.13"),
                Some(hash.clone()),
                "-arm64"
            )
        );
        let r = parse("-perf:6.6.13", &variants, &tools).unwrap();
        assert_eq!(r.kind, Kind::Tool("perf".into()));
        assert!(parse(":6.6.13-builder", &variants, &tools).is_none());
        assert!(parse("-bcc:6.6.13", &variants, &tools).is_none());
    }

    #[test]
    fn only_standalone_references_are_found() {
        let text = "image: linuxkit/kernel:6.6.13\nx: notlinuxkit/kernel:6.6.13\ny: linuxkit/kernel:6.6.13-builder\nz: docker.io/linuxkit/kernel:6.6.14\nw: ghcr.io/linuxkit/kernel:6.6.13\nv: xdocker.io/linuxkit/kernel:6.6.13\np: linuxkit/kernel:6.6.15@sha256:00\n";
        let found: Vec<String> = scan(text.as_bytes(), "linuxkit", "kernel", &[], &[])
            .into_iter()
            .map(|f| match f {
                Found::Movable(r) => text[r.start..r.end].to_string(),
                Found::Pinned { start, end } => format!("pinned {}", &text[start..end]),
            })
            .collect();
        assert_eq!(
            found,
            [
                "linuxkit/kernel:6.6.13",
                "linuxkit/kernel:6.6.14",
                "pinned linuxkit/kernel:6.6.15@sha256:00"
            ]
        );
    }

    #[test]
    fn file_selection() {
        assert!(
            wanted("test/cases/a/test.yml")
                && wanted("x/Dockerfile")
                && wanted("a.yaml.in")
                && wanted("x/test.sh")
        );
        assert!(!wanted("vendor/x/a.yml") && !wanted("README.md") && !wanted("Dockerfile.old"));
    }
}
