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

/// What kernel.local.kdl says that shapes the build graph.
#[derive(Debug, Default)]
pub struct Local {
    /// Series (or tool) name → replacement source: `replace "6.12.x" "URL" sha256="…"`.
    pub replacements: BTreeMap<String, Source>,
    /// `builder-id "URI"`: who this machine is, in the provenance of what it builds.
    pub builder_id: Option<String>,
}

/// The node of kernel.local.kdl that names this machine as a builder.
pub const BUILDER_ID_NODE: &str = "builder-id";

/// Reads kernel.local.kdl's replacements and builder id.
pub fn read_local(text: &str, model: &Model) -> Result<Local, Vec<Problem>> {
    let doc = super::parse_kdl(text)?;
    let mut local = Local::default();
    let mut problems = Vec::new();
    for node in doc.nodes() {
        match name(node) {
            // The remote cache and executor are this machine's too; `machine` reads them.
            n if n == super::files::REMOTE_CACHE_NODE
                || n == super::files::REMOTE_EXECUTOR_NODE => {}
            BUILDER_ID_NODE => match read_builder_id(node) {
                Ok(id) => local.builder_id = Some(id),
                Err(problem) => problems.push(problem),
            },
            "replace" => match read_replace(node, model) {
                Ok((series, source)) => drop(local.replacements.insert(series, source)),
                Err(problem) => problems.push(problem),
            },
            _ => problems.push(nodes::unknown_node(
                node,
                LOCAL_FILE,
                &[
                    "replace",
                    BUILDER_ID_NODE,
                    super::files::REMOTE_CACHE_NODE,
                    super::files::REMOTE_EXECUTOR_NODE,
                ],
            )),
        }
    }
    if problems.is_empty() {
        Ok(local)
    } else {
        Err(problems)
    }
}

/// A builder id is a URI (SLSA's `builder.id`): a scheme, then something.
fn read_builder_id(node: &kdl::KdlNode) -> Result<String, Problem> {
    let spanned = nodes::string(node)?;
    let id = spanned.value;
    let scheme_ok = id.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !scheme_ok || id.chars().any(char::is_whitespace) {
        return Err(Problem::new(
            format!("`{BUILDER_ID_NODE}` must be a URI, not `{id}`"),
            spanned.span,
            "not a URI",
        )
        .help("write: builder-id \"https://ci.example.org/runners/kernel-1\""));
    }
    Ok(id)
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
