//! The files beside kernel.kdl that decide sources: `kernel.lock` (pinned sha256 per URL,
//! committed, as Cargo.lock) and `kernel.local.kdl` (per-machine source replacement, never
//! committed, as Cargo's source replacement or Yocto's PREMIRRORS).

use std::collections::BTreeMap;
use std::path::Path;

use super::diag::Problem;
use super::nodes::{self, name};
use crate::digest::Sha256;
use crate::model::{Model, Source};

pub use super::files::{LOCAL_FILE, LOCK_FILE};

/// URL → pinned sha256, from kernel.lock.
pub fn read_lock(text: &str) -> Result<BTreeMap<String, Sha256>, Vec<Problem>> {
    let doc = super::parse_kdl(text)?;
    let mut pins = BTreeMap::new();
    let mut problems = Vec::new();
    for node in doc.nodes() {
        if name(node) != "source" {
            problems.push(nodes::unknown_node(node, LOCK_FILE, &["source"]));
            continue;
        }
        match super::source::read_source(node) {
            Ok((source, _)) => match source.sha256 {
                Some(sha) => drop(pins.insert(source.urls[0].clone(), sha)),
                None => problems.push(Problem::new(
                    "a lock entry needs sha256=",
                    node.span(),
                    "unpinned",
                )),
            },
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(pins)
    } else {
        Err(problems)
    }
}

/// Series (or tool) name → replacement source, from kernel.local.kdl:
/// `replace "6.12.x" "URL" sha256="…"`.
pub fn read_local(text: &str, model: &Model) -> Result<BTreeMap<String, Source>, Vec<Problem>> {
    let doc = super::parse_kdl(text)?;
    let mut replacements = BTreeMap::new();
    let mut problems = Vec::new();
    for node in doc.nodes() {
        // The remote cache is this machine's too; `machine` reads it.
        if name(node) == super::files::REMOTE_CACHE_NODE {
            continue;
        }
        if name(node) != "replace" {
            problems.push(nodes::unknown_node(
                node,
                LOCAL_FILE,
                &["replace", super::files::REMOTE_CACHE_NODE],
            ));
            continue;
        }
        match read_replace(node, model) {
            Ok((series, source)) => drop(replacements.insert(series, source)),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(replacements)
    } else {
        Err(problems)
    }
}

fn read_replace(node: &kdl::KdlNode, model: &Model) -> Result<(String, Source), Problem> {
    let mut values = nodes::strings(node)?;
    if values.len() < 2 {
        return Err(Problem::new(
            "`replace` takes a series and a URL",
            node.span(),
            "incomplete",
        )
        .help(
            "write: replace \"6.12.x\" \"file:///usr/src/linux-source-6.12.tar.xz\" sha256=\"…\"",
        ));
    }
    let series = values.remove(0);
    let tool_source = model
        .tool(&series.value)
        .is_some_and(|t| t.source.is_some());
    if model.series(&series.value).is_none() && !tool_source {
        let known = model.series.iter().map(|s| s.name.as_str());
        let tools = model.tools.iter().filter(|t| t.source.is_some());
        return Err(Problem::new(
            format!("no series or tool source `{}` to replace", series.value),
            series.span,
            "not in kernel.kdl",
        )
        .suggest(&series.value, known.chain(tools.map(|t| t.name.as_str()))));
    }
    let mut node = node.clone();
    node.entries_mut().remove(0);
    let (source, _) = super::source::read_source(&node)?;
    if source.sha256.is_none() && source.package.is_none() {
        // Pinning it in kernel.lock would commit one machine's file to everyone.
        return Err(Problem::new(
            "a replacement needs its own sha256=",
            node.span(),
            "unpinned",
        )
        .help("add sha256=\"…\" (sha256sum of the tarball) to this `replace` node, or package=\"NAME\" to pin it per machine and follow the package"));
    }
    Ok((series.value, source))
}

/// Applies replacements, then lock pins to every source that has no sha256 of its own.
pub fn apply(
    model: &mut Model,
    pins: &BTreeMap<String, Sha256>,
    replacements: BTreeMap<String, Source>,
) {
    for (name, source) in model.sources_mut() {
        if let Some(mut replacement) = replacements.get(name).cloned() {
            replacement.replaced = Some(source.urls[0].clone());
            *source = replacement;
        }
        if source.sha256.is_none() {
            source.sha256 = pins.get(&source.urls[0]).cloned();
        }
    }
}

/// A tool's source that names a series' tarball (a library inside a kernel tree, say) is that
/// file: it takes the series' pin, which a `package=` source gets only from this machine.
pub fn share_series_pins(model: &mut Model) {
    let pinned: BTreeMap<String, Sha256> = model
        .series
        .iter()
        .filter_map(|s| Some((s.source.urls[0].clone(), s.source.sha256.clone()?)))
        .collect();
    for tool in &mut model.tools {
        if let Some(source) = tool.source.as_mut().filter(|s| s.sha256.is_none()) {
            source.sha256 = pinned.get(&source.urls[0]).cloned();
        }
    }
}

/// Records the sha256 of a fetched, unpinned URL in kernel.lock, keeping what is there.
pub fn pin(root: &Path, url: &str, sha256: &Sha256) -> std::io::Result<()> {
    let path = root.join(LOCK_FILE);
    // kernel.lock itself is replaced by rename, so the lock is taken on a file beside it.
    let lock_path = root.join(".kernel.lock.lock");
    let guard = std::fs::File::create(&lock_path)?;
    guard.lock()?;
    let mut text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // Only an absent lock starts afresh: an unreadable one is never overwritten.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "// Pinned sha256 of every source kernel.kdl names without one. Written by kbuild; commit it.\n".to_string()
        }
        Err(e) => return Err(e),
    };
    if !text.contains(&format!("\"{url}\"")) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("source \"{url}\" sha256=\"{sha256}\"\n"));
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}
