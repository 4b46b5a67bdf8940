//! The lowered graph, kept across runs: an edit that cannot change lowering (a config, a
//! fragment, a patch's content) plans without lowering or encoding keys again, and an edit of
//! kernel.kdl lowers again only the series it reaches.
//!
//! Lowering is a function of kbuild's own executable, the manifest texts, the stamps of the
//! package tarballs they pin, the resolved targets, whether builds run natively in containers,
//! and the listing of every patch directory the targets use. Their digest names the kept graph;
//! when it matches, the graph is restored as it was before tagging, with each action's own part
//! of its key ([`crate::key::own_part`]). Tag hashes read input contents, so each group's hash
//! is kept with the inputs it read and made again only where one of them changed; the own parts
//! of that group's tag, image and index actions are then made again too.
//!
//! When the manifest changed, the graph is put together series by series, as lowering always
//! does ([`crate::plan::lower_for`]): each series' segment is kept with the digest of what
//! lowering it reads of the model (the series, the variants and tools its targets name, the
//! defaults) and of its patch directories' listings; a segment whose digest still holds is
//! spliced back with its own parts and tag hashes, the others are lowered again (`splice.rs`).
//! A kept graph that does not match, or cannot be read, is ignored: lowering runs and keeps its
//! graph. See doc/design.md.

mod kept;
mod splice;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::action::ActionId;
use crate::arch::Arch;
use crate::digest::Digest;
use crate::graph::Graph;
use crate::label::{Label, TargetKind};
use crate::model::{Defaults, Model, Series, Tool, Variant};
use crate::saved::State;
use crate::tags::GroupHash;
use kept::{Head, Kept, keep, restore_actions};

/// Hashes kbuild's own executable: its version, size and mtime. `None` when it cannot be found.
fn hash_kbuild(h: &mut blake3::Hasher) -> Option<()> {
    let exe = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    h.update(
        format!(
            "{} {} {} {}\n",
            env!("CARGO_PKG_VERSION"),
            exe.len(),
            exe.mtime(),
            exe.mtime_nsec()
        )
        .as_bytes(),
    );
    Some(())
}

/// Hashes the texts of [`crate::manifest::FILES`].
fn hash_manifest_texts(h: &mut blake3::Hasher, root: &Path) {
    for file in crate::manifest::FILES {
        let text = std::fs::read(root.join(file)).unwrap_or_default();
        h.update(format!("{file} {}\n", text.len()).as_bytes());
        h.update(&text);
    }
}

/// Hashes kbuild's own executable and the manifest as the fingerprint depends on it: the texts
/// of [`crate::manifest::FILES`] and the stamps of the package tarballs `kernel.lock` pins.
/// `None` when the executable cannot be found.
pub fn hash_kbuild_and_manifest(h: &mut blake3::Hasher, root: &Path) -> Option<()> {
    hash_kbuild(h)?;
    hash_manifest_texts(h, root);
    // A package update replaces a pinned tarball without touching any file above.
    h.update(crate::manifest::packages::stamps(root).as_bytes());
    Some(())
}

/// The digest of what every segment's lowering reads outside the model: kbuild's executable,
/// the goal, the workspace, whether builds run natively, and the package stamps (a package's
/// tarball gives its version, and a package update touches no manifest text). `None` when the
/// executable cannot be found.
fn base_digest(model: &Model, goal: crate::plan::Goal) -> Option<Digest> {
    let mut h = blake3::Hasher::new();
    hash_kbuild(&mut h)?;
    h.update(format!("goal {goal:?}\n").as_bytes());
    h.update(format!("root {}\n", model.root.display()).as_bytes());
    h.update(format!("native {}\n", model.native_builds).as_bytes());
    h.update(crate::manifest::packages::stamps(&model.root).as_bytes());
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

/// The digest of everything lowering `targets` of `model` reads: `base` (see [`base_digest`]),
/// the manifest texts, the targets, and `patch_dirs`, their patch directories with their
/// listings.
fn lowering_digest(
    base: Digest,
    model: &Model,
    targets: &[Label],
    patch_dirs: &[(String, Vec<String>)],
) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(base.as_bytes());
    hash_manifest_texts(&mut h, &model.root);
    for target in targets {
        h.update(format!("target {target}\n").as_bytes());
    }
    for (dir, files) in patch_dirs {
        h.update(format!("dir {dir}:").as_bytes());
        for file in files {
            h.update(format!("{file}\n").as_bytes());
        }
    }
    Digest::from_bytes(*h.finalize().as_bytes())
}

/// What lowering one series' targets reads of the model and the workspace, borrowed for
/// hashing: the model's declarations the planner can reach from those targets and nothing else,
/// so an edit of another series, or of a variant or tool they do not name, leaves it alone.
#[derive(Serialize)]
struct SegmentInputs<'a> {
    defaults: &'a Defaults,
    endpoints: &'a BTreeMap<Arch, String>,
    builder_id: &'a Option<String>,
    series: Option<&'a Series>,
    /// By name: the planner finds them by name (`Model::variant`), never by position.
    variants: Vec<(&'a str, Option<&'a Variant>)>,
    /// The tools named, then the libraries they use, by name.
    tools: Vec<(&'a str, Option<&'a Tool>)>,
    targets: &'a [Label],
    patch_dirs: Vec<(String, Option<&'a [String]>)>,
}

/// The digest of what lowering `targets` (all of `series`) reads; `listings` are the patch
/// directories' as listed for the whole lowering.
fn segment_digest(
    model: &Model,
    (series, targets): (&str, &[Label]),
    listings: &HashMap<&str, &[String]>,
) -> Digest {
    let mut variants: Vec<&str> = (targets.iter())
        .filter_map(Label::variants)
        .flat_map(|set| set.0.iter().map(String::as_str))
        .collect();
    variants.sort_unstable();
    variants.dedup();
    let mut tools: Vec<&str> = (targets.iter())
        .filter_map(|l| match &l.kind {
            TargetKind::Tool(tool) => Some(tool.as_str()),
            TargetKind::Kernel(_) => None,
        })
        .collect();
    // The libraries the tools use, and theirs: the planner lowers each for its tool. Each name
    // once, so `uses` that loop (the manifest rejects them) still end.
    let mut next = 0;
    while let Some(name) = tools.get(next) {
        for library in model.tool(name).into_iter().flat_map(|t| &t.uses) {
            if !tools.contains(&library.as_str()) {
                tools.push(library);
            }
        }
        next += 1;
    }
    tools.sort_unstable();
    tools.dedup();
    let inputs = SegmentInputs {
        defaults: &model.defaults,
        endpoints: &model.endpoints,
        builder_id: &model.builder_id,
        series: model.series(series),
        variants: (variants.iter()).map(|v| (*v, model.variant(v))).collect(),
        tools: (tools.iter()).map(|t| (*t, model.tool(t))).collect(),
        targets,
        patch_dirs: (crate::plan::patch_dirs(model, targets).into_iter())
            .map(|dir| {
                let listing = listings.get(dir.as_str()).copied();
                (dir, listing)
            })
            .collect(),
    };
    let bytes = postcard::to_allocvec(&inputs).expect("the model serialises");
    Digest::of_bytes(&bytes)
}

/// A patch directory and its listing.
type PatchDir = (String, Vec<String>);

/// How [`lower`] came by its graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lowering {
    /// The kept graph, whole: nothing lowering reads changed.
    Restored,
    /// Series by series: `lowered` were lowered again, `taken` from the kept graph.
    Spliced {
        lowered: Vec<String>,
        taken: Vec<String>,
    },
}

/// The graph of `targets`, restored from `kept` when nothing lowering reads changed, spliced
/// from the series that did not change and the ones lowered again when the manifest did, and
/// kept there (best effort: a graph that cannot be kept is lowered again next time).
/// `patch_dirs` are the targets' patch directories as [`crate::plan::read_patch_dirs`] listed
/// them.
pub fn lower(
    model: &Model,
    (targets, patch_dirs, goal): (&[Label], &[PatchDir], crate::plan::Goal),
    (cache_root, patterns): (&Path, &[String]),
    stat: &mut crate::statcache::StatCache,
    warn: &mut dyn FnMut(crate::fsutil::SaveError),
) -> miette::Result<(Graph, Lowering)> {
    let head = base_digest(model, goal).map(|base| Head {
        lowering: lowering_digest(base, model, targets, patch_dirs),
        base,
    });
    let state = State::Lowered {
        workspace: &model.root,
        patterns,
    };
    // A kept graph of another kbuild or workspace is not even decoded (its head comes first).
    let kept: Option<Kept> = match head {
        Some(now) => crate::saved::load_when(cache_root, state, |h: &Head| h.base == now.base)?,
        None => None,
    };
    let kept = match kept {
        Some(kept) if head.is_some_and(|h| h.lowering == kept.head.lowering) => {
            if let Some(graph) = restore(kept, model, stat)? {
                return Ok((graph, Lowering::Restored));
            }
            None
        }
        other => other,
    };
    let (graph, groups, segments, how) =
        splice::splice(kept, model, (targets, patch_dirs, goal), stat)?;
    // Without the kept graph the next plan lowers again: a warning.
    if let Some(head) = head
        && let Err(e) =
            crate::saved::save(cache_root, state, &keep(&graph, head, (groups, segments)))
    {
        warn(e);
    }
    Ok((graph, how))
}

/// The kept graph, tagged for the inputs as they are now; `None` when it does not hold
/// together (a damaged file: lowering runs instead).
fn restore(
    kept: Kept,
    model: &Model,
    stat: &mut crate::statcache::StatCache,
) -> Result<Option<Graph>, crate::tags::TagError> {
    let Kept {
        labels: table,
        envs,
        actions: kept_actions,
        targets: kept_targets,
        groups: kept_groups,
        ..
    } = kept;
    let Some((actions, own)) = restore_actions(kept_actions, &table, envs) else {
        return Ok(None);
    };
    let label = |n: &u32| table.get(*n as usize).cloned();
    let mut targets = Vec::with_capacity(kept_targets.len());
    for (kind, n, id) in &kept_targets {
        let Some(label) = label(n) else {
            return Ok(None);
        };
        targets.push((*kind, label, ActionId(*id)));
    }
    // Checks that every dependency is an earlier action and every target an action.
    let Some(mut graph) = Graph::restore(actions, targets) else {
        return Ok(None);
    };
    let in_graph = |g: &GroupHash| (g.actions.iter().flatten()).all(|id| id.index() < graph.len());
    if !kept_groups.iter().all(in_graph) {
        return Ok(None);
    }
    tag(model, &mut graph, stat, &kept_groups, graph_ids_with(own))?;
    Ok(Some(graph))
}

/// Pairs each action, in order, with its kept own part.
fn graph_ids_with(own: Vec<Digest>) -> Vec<(ActionId, Digest)> {
    (0..own.len() as u32).map(ActionId).zip(own).collect()
}

/// Fills the graph's tag hashes, `kept` groups kept where their inputs did not change, and
/// gives each action in `own` its kept own part, unless it is a tag, image or index action
/// whose group hash moved (its own part is new). Gives the groups' hashes.
fn tag(
    model: &Model,
    graph: &mut Graph,
    stat: &mut crate::statcache::StatCache,
    kept: &[GroupHash],
    own: Vec<(ActionId, Digest)>,
) -> Result<Vec<GroupHash>, crate::tags::TagError> {
    let groups = crate::tags::assign(
        model,
        graph,
        stat,
        (kept, &|t| crate::plan::lower(model, t)),
    )?;
    let before: HashMap<(&str, &TargetKind), &str> = (kept.iter())
        .map(|g| ((g.series.as_str(), &g.kind), g.hash.as_str()))
        .collect();
    let moved: HashSet<(&str, &TargetKind)> = (groups.iter())
        .filter(|g| before.get(&(g.series.as_str(), &g.kind)) != Some(&g.hash.as_str()))
        .map(|g| (g.series.as_str(), &g.kind))
        .collect();
    for (id, own) in own {
        let action = graph.action(id);
        let stale = action.kind().traits().tagged
            && (action.labels.first())
                .is_none_or(|l| moved.contains(&(l.series.as_str(), &l.kind)));
        if !stale {
            graph.keep_own_part(id, own);
        }
    }
    Ok(groups)
}
