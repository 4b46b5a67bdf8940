//! `kbuild pin SERIES…`: pins a series' source again to what its URL serves now, wherever its
//! pin lives: `sha256=` in kernel.kdl, kernel.lock, a `replace` in kernel.local.kdl, or (for a
//! `package=` source) this machine's kernel.local.lock. The one deliberate way to accept a
//! changed tarball under a pin; a run never does it by itself.

use std::ops::Range;
use std::path::Path;

use kdl::{KdlEntry, KdlNode};

use super::bump::{apply, child, series_node};
use crate::digest::Sha256;
use crate::manifest::{self, pins};
use crate::model::{Model, Series, Source};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PinError {
    #[error("no series `{0}` in kernel.kdl")]
    #[diagnostic(help("`kbuild list` shows the series"))]
    NoSeries(String),
    #[error("cannot fetch {url}: {message}")]
    #[diagnostic(help("check the URL and your network"))]
    Fetch { url: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{0} is not valid KDL; run `kbuild check`")]
    Syntax(String),
}

/// Where a series' pin is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinHome {
    Manifest,
    Lock,
    Replacement,
    Package,
}

impl PinHome {
    pub fn file(self) -> &'static str {
        match self {
            PinHome::Manifest => manifest::MANIFEST_FILE,
            PinHome::Lock => pins::LOCK_FILE,
            PinHome::Replacement => pins::LOCAL_FILE,
            PinHome::Package => manifest::packages::LOCAL_LOCK_FILE,
        }
    }
}

/// What `pin` did to one series.
pub struct Pinned {
    pub series: String,
    pub url: String,
    pub old: Option<Sha256>,
    pub new: Sha256,
    pub home: PinHome,
}

/// Pins the sources of `names` (every series when empty) to what their URLs serve now. `model`
/// must come from [`manifest::load_renewing`] with the same names, which pins package sources.
pub fn pin(root: &Path, model: &Model, names: &[String]) -> Result<Vec<Pinned>, PinError> {
    for name in names {
        if model.series(name).is_none() {
            return Err(PinError::NoSeries(name.clone()));
        }
    }
    let chosen = |s: &&Series| names.is_empty() || names.contains(&s.name);
    let mut done = Vec::new();
    for series in model.series.iter().filter(chosen) {
        if series.source.package.is_some() {
            continue;
        }
        let url = series.source.urls[0].clone();
        let new = sha256_of(root, &url)?;
        let home = write_pin(root, series, &new)?;
        done.push(Pinned {
            series: series.name.clone(),
            url,
            old: series.source.sha256.clone(),
            new,
            home,
        });
    }
    // Package sources were pinned again when `model` was loaded (`load_renewing`).
    for series in model.series.iter().filter(chosen) {
        if let Some(sha) = series
            .source
            .sha256
            .clone()
            .filter(|_| series.source.package.is_some())
        {
            done.push(Pinned {
                series: series.name.clone(),
                url: series.source.urls[0].clone(),
                old: None,
                new: sha,
                home: PinHome::Package,
            });
        }
    }
    Ok(done)
}

/// The sha256 of what `url` serves now: a local file hashed in place, a download streamed.
fn sha256_of(root: &Path, url: &str) -> Result<Sha256, PinError> {
    use sha2::Digest as _;
    let fetch_error = |message: String| PinError::Fetch {
        url: url.into(),
        message,
    };
    if let Some(path) = Source::local_path(url, root) {
        return Sha256::of_file(&path).map_err(|e| fetch_error(e.to_string()));
    }
    let response = ureq::get(url)
        .call()
        .map_err(|e| fetch_error(e.to_string()))?;
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut body, &mut hasher).map_err(|e| fetch_error(e.to_string()))?;
    Ok(Sha256::finish(hasher))
}

fn read(root: &Path, file: &str) -> Result<String, PinError> {
    std::fs::read_to_string(root.join(file)).map_err(|source| PinError::Io {
        file: file.into(),
        source,
    })
}

fn write(root: &Path, file: &str, text: &str) -> Result<(), PinError> {
    crate::fsutil::write_atomic(&root.join(file), text.as_bytes()).map_err(|source| PinError::Io {
        file: file.into(),
        source,
    })
}

/// Writes `sha` where the series' pin lives now, keeping comments and layout.
fn write_pin(root: &Path, series: &Series, sha: &Sha256) -> Result<PinHome, PinError> {
    if series.source.replaced.is_some() {
        let text = read(root, pins::LOCAL_FILE)?;
        let doc = crate::manifest::parse_kdl(&text)
            .map_err(|_| PinError::Syntax(pins::LOCAL_FILE.into()))?;
        let node = doc.nodes().iter().find(|n| {
            n.name().value() == "replace"
                && n.entries().first().and_then(|e| e.value().as_string())
                    == Some(series.name.as_str())
        });
        if let Some(edit) = node.and_then(|n| sha_edit(n, sha)) {
            write(root, pins::LOCAL_FILE, &apply(&text, vec![edit]))?;
            return Ok(PinHome::Replacement);
        }
    }
    let text = read(root, manifest::MANIFEST_FILE)?;
    let doc = crate::manifest::parse_kdl(&text)
        .map_err(|_| PinError::Syntax(manifest::MANIFEST_FILE.into()))?;
    let source = series_node(&doc, &series.name).and_then(|n| child(n, "source"));
    if let Some(edit) = source.and_then(|n| sha_edit(n, sha)) {
        write(root, manifest::MANIFEST_FILE, &apply(&text, vec![edit]))?;
        return Ok(PinHome::Manifest);
    }
    repin_lock(root, &series.source.urls[0], sha)?;
    Ok(PinHome::Lock)
}

/// The edit that replaces the value of the node's `sha256=`, if it has one.
fn sha_edit(node: &KdlNode, sha: &Sha256) -> Option<(Range<usize>, String)> {
    let entry: &KdlEntry = node
        .entries()
        .iter()
        .find(|e| e.name().is_some_and(|n| n.value() == "sha256"))?;
    let span = entry.span();
    Some((
        span.offset()..span.offset() + span.len(),
        format!("sha256=\"{sha}\""),
    ))
}

/// Drops the URL's line from kernel.lock and pins it anew.
fn repin_lock(root: &Path, url: &str, sha: &Sha256) -> Result<(), PinError> {
    let io = |source| PinError::Io {
        file: pins::LOCK_FILE.into(),
        source,
    };
    match std::fs::read_to_string(root.join(pins::LOCK_FILE)) {
        Ok(text) => {
            let quoted = format!("\"{url}\"");
            let kept: String = text
                .split_inclusive('\n')
                .filter(|line| !(line.starts_with("source ") && line.contains(&quoted)))
                .collect();
            write(root, pins::LOCK_FILE, &kept)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    pins::pin(root, url, sha).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KDL: &str = "// kernels\nseries \"6.1.x\" {\n    version \"6.1.9\" // pinned\n    source \"file://linux.tar\" sha256=\"0000000000000000000000000000000000000000000000000000000000000000\"\n}\nseries \"6.6.x\" {\n    version \"6.6.1\"\n    source \"file://other.tar\"\n}\n";

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel.kdl"), KDL).unwrap();
        std::fs::write(dir.path().join("linux.tar"), b"new tarball").unwrap();
        std::fs::write(dir.path().join("other.tar"), b"other tarball").unwrap();
        dir
    }

    fn series(name: &str, sha: Option<&str>) -> Series {
        let doc: Model = serde_json::from_value(serde_json::json!({
            "defaults": {"org": "o", "image": "i", "arches": [], "builder": "b", "localversion": "", "cross_compile": {}},
            "variants": [], "tools": [],
            "series": [{
                "name": name, "version": "6.1.9",
                "source": {"urls": [if name == "6.1.x" {"file://linux.tar"} else {"file://other.tar"}], "sha256": sha, "replaced": null},
                "arches": [], "builder": "b", "variants": [], "tools": [], "deprecated": false,
                "config": "c", "patches": "p", "source_date_epoch": null
            }]
        }))
        .unwrap();
        doc.series[0].clone()
    }

    #[test]
    fn an_inline_pin_is_rewritten_in_place() {
        let dir = workspace();
        let sha = Sha256::of_file(&dir.path().join("linux.tar")).unwrap();
        let home = write_pin(dir.path(), &series("6.1.x", Some(&"0".repeat(64))), &sha).unwrap();
        assert_eq!(home, PinHome::Manifest);
        let text = std::fs::read_to_string(dir.path().join("kernel.kdl")).unwrap();
        assert_eq!(text, KDL.replace(&"0".repeat(64), sha.as_str()));
    }

    #[test]
    fn a_lock_pin_is_replaced_not_duplicated() {
        let dir = workspace();
        let old = Sha256::parse(&"1".repeat(64)).unwrap();
        pins::pin(dir.path(), "file://other.tar", &old).unwrap();
        let sha = Sha256::of_file(&dir.path().join("other.tar")).unwrap();
        let home = write_pin(dir.path(), &series("6.6.x", Some(old.as_str())), &sha).unwrap();
        assert_eq!(home, PinHome::Lock);
        let lock = std::fs::read_to_string(dir.path().join("kernel.lock")).unwrap();
        assert!(
            lock.contains(sha.as_str()) && !lock.contains(old.as_str()),
            "{lock}"
        );
        let lines = lock.lines().filter(|l| l.starts_with("source "));
        assert_eq!(lines.count(), 1, "{lock}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel.kdl")).unwrap(),
            KDL
        );
    }
}
