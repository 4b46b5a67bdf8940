//! `kbuild bump SERIES VERSION` and `kbuild new-series NEW --from OLD VERSION`: edits kernel.kdl
//! in place, by the spans of the values it changes, so comments and layout stay as they were.

use std::path::Path;

use kdl::{KdlDocument, KdlNode};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BumpError {
    #[error("no series `{0}` in kernel.kdl")]
    #[diagnostic(help("`kbuild list` shows the series"))]
    NoSeries(String),
    #[error("series `{0}` exists already")]
    #[diagnostic(help("bump it instead: kbuild bump {0} VERSION"))]
    Exists(String),
    #[error("`{version}` is not a version of series `{series}`")]
    #[diagnostic(help(
        "a `{series}` version is MAJOR.MINOR.PATCH with the series' major and minor"
    ))]
    WrongSeries { series: String, version: String },
    #[error("kernel.kdl: {0}")]
    Io(#[from] std::io::Error),
    #[error("kernel.kdl is not valid KDL; run `kbuild check`")]
    Syntax,
}

pub(crate) fn series_node<'a>(doc: &'a KdlDocument, name: &str) -> Option<&'a KdlNode> {
    doc.nodes().iter().find(|n| {
        n.name().value() == "series"
            && n.entries().first().and_then(|e| e.value().as_string()) == Some(name)
    })
}

pub(crate) fn child<'a>(node: &'a KdlNode, name: &str) -> Option<&'a KdlNode> {
    node.children()?
        .nodes()
        .iter()
        .find(|n| n.name().value() == name)
}

/// Replacements as (byte range, new text), applied from the end so ranges stay valid.
pub(crate) fn apply(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (range, new) in edits {
        out.replace_range(range, &new);
    }
    out
}

fn check_version(series: &str, version: &str) -> Result<semver::Version, BumpError> {
    let wrong = || BumpError::WrongSeries {
        series: series.into(),
        version: version.into(),
    };
    let v = semver::Version::parse(version).map_err(|_| wrong())?;
    (series == format!("{}.{}.x", v.major, v.minor))
        .then_some(v)
        .ok_or_else(wrong)
}

/// The edits that move the series node `node` (old version `old`) to `new`: the version value,
/// the version inside each source URL, and the dropped sha256 (the new tarball's pin goes to
/// kernel.lock on its first fetch).
fn version_edits(
    text: &str,
    node: &KdlNode,
    old: &str,
    new: &str,
) -> Vec<(std::ops::Range<usize>, String)> {
    let mut edits = Vec::new();
    let span = |e: &kdl::KdlEntry| e.span().offset()..e.span().offset() + e.span().len();
    if let Some(version) = child(node, "version").and_then(|n| n.entries().first()) {
        edits.push((span(version), format!("\"{new}\"")));
    }
    if let Some(source) = child(node, "source") {
        for entry in source.entries() {
            let range = span(entry);
            match entry.name().map(|n| n.value()) {
                None => {
                    let url = entry.value().as_string().unwrap_or_default();
                    edits.push((range, format!("\"{}\"", new_url(url, old, new))));
                }
                Some("sha256") => {
                    // Also drop the blank before the property.
                    let start = text[..range.start].trim_end_matches([' ', '\t']).len();
                    edits.push((start..range.end, String::new()));
                }
                Some(_) => {}
            }
        }
    }
    edits
}

/// `url` with version `old` replaced by `new`, and kernel.org's major directory (`/v5.x/`)
/// moved along when the major changes.
fn new_url(url: &str, old: &str, new: &str) -> String {
    let major = |v: &str| v.split('.').next().unwrap_or_default().to_string();
    let url = url.replace(old, new);
    let (from, to) = (major(old), major(new));
    if from == to {
        return url;
    }
    url.replace(&format!("/v{from}.x/"), &format!("/v{to}.x/"))
}

/// Sets the version of `series`; returns the old version.
pub fn bump(root: &Path, series: &str, version: &str) -> Result<String, BumpError> {
    check_version(series, version)?;
    let path = root.join(crate::manifest::MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)?;
    let doc = crate::manifest::parse_kdl(&text).map_err(|_| BumpError::Syntax)?;
    let node = series_node(&doc, series).ok_or_else(|| BumpError::NoSeries(series.into()))?;
    let old = child(node, "version")
        .and_then(|n| n.entries().first())
        .and_then(|e| e.value().as_string())
        .unwrap_or_default()
        .to_string();
    let edited = apply(&text, version_edits(&text, node, &old, version));
    std::fs::write(&path, edited)?;
    drop_pins_of(root, &old)?;
    Ok(old)
}

/// Removes kernel.lock entries of the old version's URLs, so that the lock says what is used.
fn drop_pins_of(root: &Path, old: &str) -> std::io::Result<()> {
    let path = root.join(crate::manifest::pins::LOCK_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| !(l.starts_with("source ") && l.contains(&format!("-{old}.tar"))))
        .collect();
    if kept != text {
        std::fs::write(&path, kept)?;
    }
    Ok(())
}

/// Adds series `new` at `version` as a copy of `from`: its node in kernel.kdl (placed after it)
/// and its folder under kernel/ (configs and patches).
pub fn new_series(root: &Path, new: &str, from: &str, version: &str) -> Result<(), BumpError> {
    check_version(new, version)?;
    let path = root.join(crate::manifest::MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)?;
    let doc = crate::manifest::parse_kdl(&text).map_err(|_| BumpError::Syntax)?;
    if series_node(&doc, new).is_some() {
        return Err(BumpError::Exists(new.into()));
    }
    let node = series_node(&doc, from).ok_or_else(|| BumpError::NoSeries(from.into()))?;
    let (start, end) = (
        node.span().offset(),
        node.span().offset() + node.span().len(),
    );
    let node_text = &text[start..end];
    let old = child(node, "version")
        .and_then(|n| n.entries().first())
        .and_then(|e| e.value().as_string())
        .unwrap_or_default();
    // The copy, edited with offsets relative to the node's own text.
    let shift = |(r, s): (std::ops::Range<usize>, String)| (r.start - start..r.end - start, s);
    let mut edits: Vec<_> = version_edits(&text, node, old, version)
        .into_iter()
        .map(shift)
        .collect();
    let name = node.entries()[0].span();
    edits.push((
        name.offset() - start..name.offset() + name.len() - start,
        format!("\"{new}\""),
    ));
    // A new series is meant to build: the old one's retirement stays with it.
    if let Some(retired) = child(node, "deprecated") {
        let span = retired.span();
        let line_start = text[..span.offset()].rfind('\n').map_or(0, |i| i + 1);
        let mut end = span.offset() + span.len();
        if text[end..].starts_with('\n') {
            end += 1;
        }
        edits.push((line_start - start..end - start, String::new()));
    }
    let copy = apply(node_text, edits);
    let mut out = text[..end].to_string();
    out.push_str("\n\n");
    out.push_str(&copy);
    out.push_str(&text[end..]);
    std::fs::write(&path, out)?;
    copy_dir(
        &root.join("kernel").join(from),
        &root.join("kernel").join(new),
    )?;
    // The variants' folders (`kernel/6.12.x-rt/`) come along: the copy keeps `variants "rt"`,
    // whose fragments and patches are found by the series' name.
    let prefix = format!("{from}-");
    for entry in std::fs::read_dir(root.join("kernel"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(variant) = name.strip_prefix(&prefix)
            && entry.file_type()?.is_dir()
        {
            copy_dir(
                &entry.path(),
                &root.join("kernel").join(format!("{new}-{variant}")),
            )?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KDL: &str = "// the matrix\nseries \"6.6.x\" {\n    // pinned\n    version \"6.6.9\" // old\n    source \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.9.tar.xz\" sha256=\"abc\"\n}\n";

    #[test]
    fn a_new_major_moves_the_url_directory_and_drops_deprecated() {
        assert_eq!(
            new_url(
                "https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.15.1.tar.xz",
                "5.15.1",
                "6.1.1"
            ),
            "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.1.tar.xz"
        );
        let dir = tempfile::tempdir().unwrap();
        let old = "series \"5.15.x\" {\n    version \"5.15.1\"\n    source \"https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.15.1.tar.xz\"\n    deprecated\n}\n";
        std::fs::write(dir.path().join("kernel.kdl"), old).unwrap();
        std::fs::create_dir_all(dir.path().join("kernel/5.15.x")).unwrap();
        new_series(dir.path(), "6.1.x", "5.15.x", "6.1.1").unwrap();
        let text = std::fs::read_to_string(dir.path().join("kernel.kdl")).unwrap();
        assert!(
            text.starts_with(old),
            "the old series keeps deprecated:\n{text}"
        );
        assert!(
            text.ends_with("series \"6.1.x\" {\n    version \"6.1.1\"\n    source \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.1.tar.xz\"\n}\n"),
            "{text}"
        );
    }

    #[test]
    fn bump_edits_values_and_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel.kdl"), KDL).unwrap();
        assert_eq!(bump(dir.path(), "6.6.x", "6.6.71").unwrap(), "6.6.9");
        let text = std::fs::read_to_string(dir.path().join("kernel.kdl")).unwrap();
        assert_eq!(
            text,
            "// the matrix\nseries \"6.6.x\" {\n    // pinned\n    version \"6.6.71\" // old\n    source \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.71.tar.xz\"\n}\n"
        );
        assert!(matches!(
            bump(dir.path(), "6.6.x", "6.7.1"),
            Err(BumpError::WrongSeries { .. })
        ));
        assert!(matches!(
            bump(dir.path(), "6.1.x", "6.1.1"),
            Err(BumpError::NoSeries(_))
        ));
    }

    #[test]
    fn new_series_copies_node_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel.kdl"), KDL).unwrap();
        std::fs::create_dir_all(dir.path().join("kernel/6.6.x/patches")).unwrap();
        std::fs::write(
            dir.path().join("kernel/6.6.x/config-x86_64"),
            "CONFIG_A=y\n",
        )
        .unwrap();
        new_series(dir.path(), "6.12.x", "6.6.x", "6.12.1").unwrap();
        let text = std::fs::read_to_string(dir.path().join("kernel.kdl")).unwrap();
        assert!(
            text.starts_with(KDL.trim_end()),
            "the old series is untouched:\n{text}"
        );
        assert!(text.contains("series \"6.12.x\" {\n    // pinned\n    version \"6.12.1\" // old\n    source \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.12.1.tar.xz\"\n}"), "{text}");
        assert!(dir.path().join("kernel/6.12.x/config-x86_64").is_file());
        assert!(!text.contains("deprecated"), "{text}");
        assert!(dir.path().join("kernel/6.12.x/patches").is_dir());
    }
}
