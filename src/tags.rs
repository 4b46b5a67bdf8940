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

use serde::{Deserialize, Serialize};

use crate::action::ActionId;
use crate::action::Recipe;
use crate::digest::Digest;
use crate::graph::Graph;
use crate::kind::ActionKind;
use crate::label::{Label, TargetKind};
use crate::model::Model;
use crate::plan::PlanError;
use crate::statcache::StatCache;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TagError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(help("kernel.kdl refers to this file; restore it or change kernel.kdl"))]
    Input {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lower(#[from] PlanError),
}

/// Lowers the targets of one group, for a hash the graph at hand cannot give (it does not hold
/// every arch of the group): the planner's, handed in by whoever asks for hashes.
pub type LowerGroup<'a> = &'a dyn Fn(&[Label]) -> Result<Graph, PlanError>;

/// The targets of `label`'s series and kind, one per arch: `all_targets` of that series alone,
/// as listing every target of the model for each group made tagging quadratic.
fn group_targets(model: &Model, label: &Label) -> Vec<Label> {
    let Some(series) = model.series(&label.series).filter(|s| !s.deprecated) else {
        return Vec::new();
    };
    let built = match &label.kind {
        TargetKind::Kernel(set) => set.is_plain() || series.variants.contains(set),
        TargetKind::Tool(tool) => series.tools.contains(tool),
    };
    if !built {
        return Vec::new();
    }
    (series.arches.iter())
        .filter(|&&arch| match &label.kind {
            TargetKind::Kernel(set) => model.set_builds_for(set, arch),
            TargetKind::Tool(_) => true,
        })
        .map(|&arch| Label {
            series: series.name.clone(),
            kind: label.kind.clone(),
            arch,
        })
        .collect()
}

/// A group's hash and the input files it was made of, with their digests then: while they hold,
/// the same graph gives the same hash (see `src/lowered/`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupHash {
    pub series: String,
    pub kind: TargetKind,
    pub hash: String,
    pub inputs: Vec<(String, Digest)>,
    /// The actions hashed, when they are the graph's own (not a separate lowering of the
    /// group): a changed input is hashed again over exactly these.
    pub actions: Option<Vec<ActionId>>,
}

/// A group's hash and the inputs it read, with their digests.
type Hashed = (String, Vec<(String, Digest)>);

/// The same, with the graph's actions it was made of.
type HashedIn = (Hashed, Vec<ActionId>);

/// Combines the digests of `ids`' actions: kind, recipe, environment and input contents, sorted,
/// so the order in which actions were lowered does not matter. Also gives the inputs read.
fn hash_actions(
    graph: &Graph,
    ids: impl Iterator<Item = ActionId>,
    model: &Model,
    stat: &mut StatCache,
) -> Result<Hashed, TagError> {
    let mut entries = Vec::new();
    let mut read = Vec::new();
    for id in ids {
        let action = graph.action(id);
        if action.kind().traits().describes {
            continue;
        }
        let mut inputs = Vec::with_capacity(action.inputs.len());
        for rel in &action.inputs {
            let digest = stat
                .digest(&model.root.join(rel))
                .map_err(|source| TagError::Input {
                    path: rel.clone(),
                    source,
                })?;
            inputs.push((rel.clone(), digest));
        }
        entries.push(*crate::key::declared(action, &inputs).as_bytes());
        read.extend(inputs);
    }
    entries.sort();
    read.sort();
    read.dedup();
    let hash = Digest::of_bytes(&entries.concat()).to_hex()[..40].to_string();
    Ok((hash, read))
}

/// The hash of the series and kind of `label`, over all the arches the model builds it for.
pub fn group_hash(
    model: &Model,
    label: &Label,
    stat: &mut StatCache,
    lower: LowerGroup,
) -> Result<String, TagError> {
    group_hash_read(model, label, stat, lower).map(|(hash, _)| hash)
}

fn group_hash_read(
    model: &Model,
    label: &Label,
    stat: &mut StatCache,
    lower: LowerGroup,
) -> Result<Hashed, TagError> {
    let graph = lower(&group_targets(model, label))?;
    hash_actions(&graph, graph.ids(), model, stat)
}

/// The same hash, read off `graph` when it holds the whole group (every arch's tag and the index
/// over all of them): the common `//...` case, which then lowers nothing twice.
fn group_hash_in(
    graph: &Graph,
    model: &Model,
    label: &Label,
    stat: &mut StatCache,
) -> Option<Result<HashedIn, TagError>> {
    let group = group_targets(model, label);
    let mut roots = Vec::new();
    for target in &group {
        roots.push(graph.of(ActionKind::Tag, target)?);
    }
    let index = graph.of(ActionKind::Index, label)?;
    let images = (graph.action(index).deps.iter())
        .filter(|d| matches!(d.role, crate::action::Role::Platform(_)))
        .count();
    if images != group.len() {
        return None;
    }
    roots.push(index);
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = roots.pop() {
        if seen.insert(id) {
            roots.extend(
                (graph.action(id).deps.iter())
                    .filter(|d| !graph.action(d.id).kind().traits().describes)
                    .map(|d| d.id),
            );
        }
    }
    let mut ids: Vec<ActionId> = seen.into_iter().collect();
    ids.sort();
    Some(hash_actions(graph, ids.iter().copied(), model, stat).map(|h| (h, ids)))
}

/// Fills the hash of every tag, image (its revision label) and index action in `graph`, and
/// gives each group's hash with what it read. All hashes are computed before any recipe
/// changes, as they read recipes. A group in `kept` whose inputs still have the digests it
/// records keeps its hash: `kept` must come from this same lowered graph.
pub fn assign(
    model: &Model,
    graph: &mut Graph,
    stat: &mut StatCache,
    (kept, lower): (&[GroupHash], LowerGroup),
) -> Result<Vec<GroupHash>, TagError> {
    let kept: HashMap<(&str, &TargetKind), &GroupHash> = kept
        .iter()
        .map(|g| ((g.series.as_str(), &g.kind), g))
        .collect();
    let mut hashes: HashMap<(String, TargetKind), GroupHash> = HashMap::new();
    // Groups of one series share inputs: each is looked at once.
    let mut now: HashMap<String, Option<Digest>> = HashMap::new();
    let mut todo = Vec::new();
    for id in graph.ids() {
        if !graph.action(id).kind().traits().tagged {
            continue;
        }
        let label = graph.action(id).labels[0].clone();
        let key = (label.series.clone(), label.kind.clone());
        if !hashes.contains_key(&key) {
            let still = kept
                .get(&(label.series.as_str(), &label.kind))
                .filter(|g| unchanged(g, model, stat, &mut now));
            let ((hash, inputs), actions) = match still {
                Some(g) => ((g.hash.clone(), g.inputs.clone()), g.actions.clone()),
                None => match kept.get(&(label.series.as_str(), &label.kind)) {
                    // The same graph: the same actions, with other inputs.
                    Some(GroupHash {
                        actions: Some(ids), ..
                    }) => (
                        hash_actions(graph, ids.iter().copied(), model, stat)?,
                        Some(ids.clone()),
                    ),
                    _ => match group_hash_in(graph, model, &label, stat) {
                        Some(hashed) => hashed.map(|(h, ids)| (h, Some(ids)))?,
                        None => (group_hash_read(model, &label, stat, lower)?, None),
                    },
                },
            };
            let group = GroupHash {
                series: key.0.clone(),
                kind: key.1.clone(),
                hash,
                inputs,
                actions,
            };
            hashes.insert(key.clone(), group);
        }
        todo.push((id, key));
    }
    for (id, key) in todo {
        let hash = hashes[&key].hash.clone();
        match graph.recipe_mut(id) {
            Recipe::Tag(spec) => spec.hash = hash,
            Recipe::Index(spec) => spec.hash = hash,
            Recipe::Attest(spec) => spec.hash = hash,
            Recipe::Image(spec) => spec.revision = hash,
            _ => {}
        }
    }
    let mut groups: Vec<GroupHash> = hashes.into_values().collect();
    groups.sort_by(|a, b| (&a.series, &a.kind).cmp(&(&b.series, &b.kind)));
    Ok(groups)
}

/// Empties the hash [`assign`] filled in, giving the recipe as lowering made it.
pub fn clear(recipe: &mut Recipe) {
    match recipe {
        Recipe::Tag(spec) => spec.hash.clear(),
        Recipe::Index(spec) => spec.hash.clear(),
        Recipe::Image(spec) => spec.revision.clear(),
        _ => {}
    }
}

/// Whether every input `group` was made of still has the digest it had.
fn unchanged(
    group: &GroupHash,
    model: &Model,
    stat: &mut StatCache,
    now: &mut HashMap<String, Option<Digest>>,
) -> bool {
    (group.inputs.iter()).all(|(rel, digest)| {
        let current = now
            .entry(rel.clone())
            .or_insert_with(|| stat.digest(&model.root.join(rel)).ok());
        *current == Some(*digest)
    })
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
