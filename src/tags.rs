//! Image references, as LinuxKit publishes them, and the hash inside them.
//!
//! `<org>/<image>:<version>[-<variant>][-<hash>][-<arch>]`. The hash is a digest of everything
//! kernel.kdl and kernel/ say about one series and variant (or tool), across all its arches:
//! every action's kind, recipe parameters (source pin, patch and fragment names, LOCALVERSION,
//! options forced off, builder reference …), environment and the content of every input file
//! (configs, fragments, patches). It is content, not git state: two different uncommitted edits
//! never share a tag, and committing an edit changes nothing. It leaves out what ran the build
//! (the executor), as the builder reference pins that. See doc/tags.md.

use std::collections::HashMap;

use crate::action::Recipe;
use crate::digest::Digest;
use crate::graph::Graph;
use crate::label::{Label, TargetKind, all_targets};
use crate::model::Model;
use crate::statcache::StatCache;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot read `{path}`: {source}")]
#[diagnostic(help("kernel.kdl refers to this file; restore it or change kernel.kdl"))]
pub struct TagError {
    path: String,
    source: std::io::Error,
}

/// The hash of the series and kind of `label`, over all the arches the model builds it for.
pub fn group_hash(model: &Model, label: &Label, stat: &mut StatCache) -> Result<String, TagError> {
    let group: Vec<Label> = all_targets(model)
        .into_iter()
        .filter(|t| t.series == label.series && t.kind == label.kind)
        .collect();
    let graph = crate::plan::lower(model, &group).expect("the planner makes no cycles");
    let mut entries = Vec::with_capacity(graph.len());
    for id in graph.ids() {
        let action = graph.action(id);
        let mut h = blake3::Hasher::new();
        h.update(action.kind.as_str().as_bytes());
        h.update(&serde_json::to_vec(&action.recipe).expect("recipes serialise"));
        h.update(&serde_json::to_vec(&*action.env).expect("env serialises"));
        for rel in &action.inputs {
            let digest = stat
                .digest(&model.root.join(rel))
                .map_err(|source| TagError {
                    path: rel.clone(),
                    source,
                })?;
            h.update(rel.as_bytes());
            h.update(digest.as_bytes());
        }
        entries.push(*h.finalize().as_bytes());
    }
    // Sorted, so the hash does not depend on the order in which actions were lowered.
    entries.sort();
    let digest = Digest::of_bytes(&entries.concat());
    Ok(digest.to_hex()[..40].to_string())
}

/// Fills the hash of every tag, image (its revision label) and index action in `graph`.
pub fn assign(model: &Model, graph: &mut Graph, stat: &mut StatCache) -> Result<(), TagError> {
    let mut memo: HashMap<(String, TargetKind), String> = HashMap::new();
    let ids: Vec<_> = graph.ids().collect();
    for id in ids {
        let label = match &graph.action(id).recipe {
            Recipe::Tag(_) | Recipe::Image(_) | Recipe::Index(_) => {
                graph.action(id).labels[0].clone()
            }
            _ => continue,
        };
        let key = (label.series.clone(), label.kind.clone());
        let hash = match memo.get(&key) {
            Some(hash) => hash.clone(),
            None => {
                let hash = group_hash(model, &label, stat)?;
                memo.insert(key, hash.clone());
                hash
            }
        };
        match graph.recipe_mut(id) {
            Recipe::Tag(spec) => spec.hash = hash,
            Recipe::Index(spec) => spec.hash = hash,
            Recipe::Image(spec) => spec.revision = hash,
            _ => {}
        }
    }
    Ok(())
}

/// The references of one target: per arch, and for the multi-arch index over its arches.
#[derive(Debug, Clone, serde::Serialize)]
pub struct References {
    pub arch: Vec<String>,
    pub index: Vec<String>,
}

pub fn references(repository: &str, prefix: &str, hash: &str, arch: &str) -> References {
    References {
        arch: vec![
            format!("{repository}:{prefix}-{arch}"),
            format!("{repository}:{prefix}-{hash}-{arch}"),
        ],
        index: vec![
            format!("{repository}:{prefix}"),
            format!("{repository}:{prefix}-{hash}"),
        ],
    }
}
