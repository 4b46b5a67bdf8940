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
                slot.insert((version, crate::tags::group_hash(model, &label, stat)?));
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

/// Finds `<org>/<image>[-<tool>]:<M.m.p>[-<variant>][-<hash>][-<arch>]` references that stand
/// alone: a reference glued to more word characters on either side is not one.
fn scan(text: &str, org: &str, image: &str, variants: &[String], tools: &[String]) -> Vec<Ref> {
    let needle = format!("{org}/{image}");
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let start = from + pos;
        from = start + needle.len();
        if start > 0 && (is_word(bytes[start - 1]) || bytes[start - 1] == b'/') {
            continue;
        }
        let end = (from..bytes.len())
            .find(|&i| !(is_word(bytes[i]) || bytes[i] == b':'))
            .unwrap_or(bytes.len());
        if let Some(r) = parse(&text[from..end], variants, tools) {
            found.push(Ref { start, end, ..r });
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

/// The text with every reference moved, and the changes made.
pub fn rewrite(file: &str, text: &str, model: &Model, latest: &Latest) -> (String, Vec<Change>) {
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
    let mut out = String::with_capacity(text.len());
    let mut changes = Vec::new();
    let mut last = 0;
    for r in scan(text, org, image, &variants, &tools) {
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
        let old = &text[r.start..r.end];
        if new != old {
            let line = text[..r.start].matches('\n').count() + 1;
            changes.push(Change {
                file: file.to_string(),
                line,
                old: old.to_string(),
                new: new.clone(),
            });
            out.push_str(&text[last..r.start]);
            out.push_str(&new);
            last = r.end;
        }
    }
    out.push_str(&text[last..]);
    (out, changes)
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

/// The files git tracks under `paths` (relative to `root`), or every file when `root` is not a
/// git checkout.
pub fn tracked_files(root: &Path, paths: &[PathBuf]) -> std::io::Result<Vec<String>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--"])
        .args(paths)
        .output();
    if let Ok(out) = out
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        return Ok(text
            .split('\0')
            .filter(|p| !p.is_empty() && wanted(p))
            .map(String::from)
            .collect());
    }
    let mut files = Vec::new();
    let starts: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::new()]
    } else {
        paths.to_vec()
    };
    for start in starts {
        walk(root, &start, &mut files)?;
    }
    Ok(files.into_iter().filter(|p| wanted(p)).collect())
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let path = root.join(rel);
    if path.is_file() {
        out.push(rel.to_string_lossy().into_owned());
        return Ok(());
    }
    for entry in std::fs::read_dir(&path)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || name == "cache" || name == "target" {
            continue;
        }
        walk(root, &rel.join(name), out)?;
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
        let text = "image: linuxkit/kernel:6.6.13\nx: notlinuxkit/kernel:6.6.13\ny: linuxkit/kernel:6.6.13-builder\nz: docker.io/linuxkit/kernel:6.6.13\n";
        let found = scan(text, "linuxkit", "kernel", &[], &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            &text[found[0].start..found[0].end],
            "linuxkit/kernel:6.6.13"
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
