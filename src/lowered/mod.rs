//! The lowered graph, kept across runs: an edit that cannot change lowering (a config, a
//! fragment, a patch's content) plans without lowering or encoding keys again.
//!
//! Lowering is a function of kbuild's own executable, the manifest texts, the stamps of the
//! package tarballs they pin, the resolved targets, whether builds run natively in containers,
//! and the listing of every patch directory the targets use. Their digest names the kept graph;
//! when it matches, the graph is restored as it was before tagging, with each action's own part
//! of its key ([`crate::key::own_part`]). Tag hashes read input contents, so each group's hash
//! is kept with the inputs it read and made again only where one of them changed; the own parts
//! of that group's tag, image and index actions are then made again too. A kept graph that
//! does not match, or cannot be read, is ignored: lowering runs and keeps its graph. See
//! doc/design.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::action::{
    Action, ActionId, AttestSpec, BuildDirs, CheckSpec, ConfigSpec, Dep, ImageSpec, IndexSpec,
    LayerSpec, PackageSpec, Recipe, Role, SbomSpec, TagSpec, TestSpec, ToolSpec,
};
use crate::arch::Arch;
use crate::digest::Digest;
use crate::graph::Graph;
use crate::kind::ActionKind;
use crate::label::{Label, TargetKind};
use crate::model::BuildSystem;
use crate::model::Model;
use crate::saved::State;
use crate::tags::GroupHash;

/// Hashes kbuild's own executable (its version, size and mtime) and the manifest as the
/// fingerprint and the kept graph both depend on it: the texts of [`crate::manifest::FILES`]
/// and the stamps of the package tarballs `kernel.lock` pins. `None` when the executable
/// cannot be found.
pub fn hash_kbuild_and_manifest(h: &mut blake3::Hasher, root: &Path) -> Option<()> {
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
    for file in crate::manifest::FILES {
        let text = std::fs::read(root.join(file)).unwrap_or_default();
        h.update(format!("{file} {}\n", text.len()).as_bytes());
        h.update(&text);
    }
    // A package update replaces a pinned tarball without touching any file above.
    h.update(crate::manifest::packages::stamps(root).as_bytes());
    Some(())
}

/// The digest of everything lowering `targets` of `model` reads: `patch_dirs` are their
/// patch directories with their listings.
fn lowering_digest(
    model: &Model,
    (targets, goal): (&[Label], crate::plan::Goal),
    patch_dirs: &[(String, Vec<String>)],
) -> Option<Digest> {
    let mut h = blake3::Hasher::new();
    hash_kbuild_and_manifest(&mut h, &model.root)?;
    h.update(format!("goal {goal:?}\n").as_bytes());
    h.update(format!("root {}\n", model.root.display()).as_bytes());
    h.update(format!("native {}\n", model.native_builds).as_bytes());
    for target in targets {
        h.update(format!("target {target}\n").as_bytes());
    }
    for (dir, files) in patch_dirs {
        h.update(format!("dir {dir}:").as_bytes());
        for file in files {
            h.update(format!("{file}\n").as_bytes());
        }
    }
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

/// [`Recipe`] as kept: externally tagged, as a binary format needs (the key's internally tagged
/// form can only be read from a self-describing one, through a buffer of every field). Both conversions are exhaustive, so a new recipe or field cannot be left out.
#[derive(Serialize, Deserialize)]
enum KeptRecipe {
    Fetch {
        urls: Vec<String>,
        sha256: Option<String>,
        file: String,
    },
    Patch {
        patches: Vec<String>,
    },
    Snapshot,
    Headers {
        arch: Arch,
    },
    Configure {
        spec: ConfigSpec,
        dir: String,
    },
    CheckConfig {
        config: ConfigSpec,
        requires: Vec<String>,
    },
    Compile {
        arch: Arch,
        dirs: BuildDirs,
        extra_outputs: Vec<String>,
    },
    Install {
        arch: Arch,
        dirs: BuildDirs,
    },
    Tool(KeptTool),
    Package(KeptPackage),
    Layer(LayerSpec),
    Image(ImageSpec),
    Index(IndexSpec),
    Tag(TagSpec),
    Test(TestSpec),
    Sbom(SbomSpec),
    Attest(AttestSpec),
}

/// [`ToolSpec`] with every field, as a binary format needs (the key leaves some out when off).
#[derive(Serialize, Deserialize)]
struct KeptTool {
    arch: Arch,
    dir: String,
    binary: String,
    args: Vec<String>,
    strip: bool,
    library: bool,
    build: BuildSystem,
    install: bool,
}

impl From<ToolSpec> for KeptTool {
    fn from(spec: ToolSpec) -> KeptTool {
        let ToolSpec {
            arch,
            dir,
            binary,
            args,
            strip,
            library,
            build,
            install,
        } = spec;
        KeptTool {
            arch,
            dir,
            binary,
            args,
            strip,
            library,
            build,
            install,
        }
    }
}

impl From<KeptTool> for ToolSpec {
    fn from(kept: KeptTool) -> ToolSpec {
        let KeptTool {
            arch,
            dir,
            binary,
            args,
            strip,
            library,
            build,
            install,
        } = kept;
        ToolSpec {
            arch,
            dir,
            binary,
            args,
            strip,
            library,
            build,
            install,
        }
    }
}

/// [`PackageSpec`] with every field, for the same reason.
#[derive(Serialize, Deserialize)]
struct KeptPackage {
    builder: String,
    version: String,
    source_url: String,
    source_sha256: String,
    patches: Vec<String>,
    tool_binary: Option<String>,
    tool_tree: bool,
    kernel_files: bool,
}

impl From<PackageSpec> for KeptPackage {
    fn from(spec: PackageSpec) -> KeptPackage {
        let PackageSpec {
            builder,
            version,
            source_url,
            source_sha256,
            patches,
            tool_binary,
            tool_tree,
            kernel_files,
        } = spec;
        KeptPackage {
            builder,
            version,
            source_url,
            source_sha256,
            patches,
            tool_binary,
            tool_tree,
            kernel_files,
        }
    }
}

impl From<KeptPackage> for PackageSpec {
    fn from(kept: KeptPackage) -> PackageSpec {
        let KeptPackage {
            builder,
            version,
            source_url,
            source_sha256,
            patches,
            tool_binary,
            tool_tree,
            kernel_files,
        } = kept;
        PackageSpec {
            builder,
            version,
            source_url,
            source_sha256,
            patches,
            tool_binary,
            tool_tree,
            kernel_files,
        }
    }
}

impl From<Recipe> for KeptRecipe {
    fn from(recipe: Recipe) -> KeptRecipe {
        match recipe {
            Recipe::Fetch { urls, sha256, file } => KeptRecipe::Fetch { urls, sha256, file },
            Recipe::Patch { patches } => KeptRecipe::Patch { patches },
            Recipe::Snapshot => KeptRecipe::Snapshot,
            Recipe::Headers { arch } => KeptRecipe::Headers { arch },
            Recipe::Configure { spec, dir } => KeptRecipe::Configure { spec, dir },
            Recipe::CheckConfig(CheckSpec { config, requires }) => {
                KeptRecipe::CheckConfig { config, requires }
            }
            Recipe::Compile {
                arch,
                dirs,
                extra_outputs,
            } => KeptRecipe::Compile {
                arch,
                dirs,
                extra_outputs,
            },
            Recipe::Install { arch, dirs } => KeptRecipe::Install { arch, dirs },
            Recipe::Tool(spec) => KeptRecipe::Tool(spec.into()),
            Recipe::Package(spec) => KeptRecipe::Package(spec.into()),
            Recipe::Layer(spec) => KeptRecipe::Layer(spec),
            Recipe::Image(spec) => KeptRecipe::Image(spec),
            Recipe::Index(spec) => KeptRecipe::Index(spec),
            Recipe::Tag(spec) => KeptRecipe::Tag(spec),
            Recipe::Test(spec) => KeptRecipe::Test(spec),
            Recipe::Sbom(spec) => KeptRecipe::Sbom(spec),
            Recipe::Attest(spec) => KeptRecipe::Attest(spec),
        }
    }
}

impl From<KeptRecipe> for Recipe {
    fn from(recipe: KeptRecipe) -> Recipe {
        match recipe {
            KeptRecipe::Fetch { urls, sha256, file } => Recipe::Fetch { urls, sha256, file },
            KeptRecipe::Patch { patches } => Recipe::Patch { patches },
            KeptRecipe::Snapshot => Recipe::Snapshot,
            KeptRecipe::Headers { arch } => Recipe::Headers { arch },
            KeptRecipe::Configure { spec, dir } => Recipe::Configure { spec, dir },
            KeptRecipe::CheckConfig { config, requires } => {
                Recipe::CheckConfig(CheckSpec { config, requires })
            }
            KeptRecipe::Compile {
                arch,
                dirs,
                extra_outputs,
            } => Recipe::Compile {
                arch,
                dirs,
                extra_outputs,
            },
            KeptRecipe::Install { arch, dirs } => Recipe::Install { arch, dirs },
            KeptRecipe::Tool(kept) => Recipe::Tool(kept.into()),
            KeptRecipe::Package(kept) => Recipe::Package(kept.into()),
            KeptRecipe::Layer(spec) => Recipe::Layer(spec),
            KeptRecipe::Image(spec) => Recipe::Image(spec),
            KeptRecipe::Index(spec) => Recipe::Index(spec),
            KeptRecipe::Tag(spec) => Recipe::Tag(spec),
            KeptRecipe::Test(spec) => Recipe::Test(spec),
            KeptRecipe::Sbom(spec) => Recipe::Sbom(spec),
            KeptRecipe::Attest(spec) => Recipe::Attest(spec),
        }
    }
}

/// One action as kept: labels and environment as indexes into tables the graph shares.
#[derive(Serialize, Deserialize)]
struct KeptAction {
    name: String,
    labels: Vec<u32>,
    /// As lowered, before tagging: tag hashes are made again from the inputs.
    recipe: KeptRecipe,
    inputs: Vec<String>,
    deps: Vec<(Role, u32)>,
    env: u32,
    arch: Option<Arch>,
    builder: Option<String>,
    /// Its own part of its key once tagged.
    own: Digest,
}

#[derive(Serialize, Deserialize)]
/// `lowering` comes first: [`lower`] reads it alone to tell whether the rest is worth decoding.
struct Kept {
    lowering: Digest,
    labels: Vec<Label>,
    /// The environments, each once: the engine tells actions' toolsets apart by environment
    /// (by pointer), so actions that share one must share one again.
    envs: Vec<BTreeMap<String, String>>,
    actions: Vec<KeptAction>,
    /// The graph's target index: (kind, label, action).
    targets: Vec<(ActionKind, u32, u32)>,
    groups: Vec<GroupHash>,
}

/// A patch directory and its listing.
type PatchDir = (String, Vec<String>);

/// The graph of `targets`, restored from `kept` when nothing lowering reads changed, else
/// lowered, tagged and kept there (best effort: a graph that cannot be kept is lowered again
/// next time). `patch_dirs` are the targets' patch directories as
/// [`crate::plan::read_patch_dirs`] listed them.
pub fn lower(
    model: &Model,
    (targets, patch_dirs, goal): (&[Label], &[PatchDir], crate::plan::Goal),
    (cache_root, patterns): (&Path, &[String]),
    stat: &mut crate::statcache::StatCache,
    warn: &mut dyn FnMut(crate::fsutil::SaveError),
) -> miette::Result<Graph> {
    let digest = lowering_digest(model, (targets, goal), patch_dirs);
    let state = State::Lowered {
        workspace: &model.root,
        patterns,
    };
    // The kept graph of another manifest is not even decoded (its digest comes first).
    let kept: Option<Kept> = match digest {
        Some(digest) => crate::saved::load_when(cache_root, state, |d: &Digest| *d == digest)?,
        None => None,
    };
    if let Some(kept) = kept
        && let Some(graph) = restore(kept, model, stat)?
    {
        return Ok(graph);
    }
    let mut graph = crate::plan::lower_for(model, targets, goal)?;
    let groups = crate::tags::assign(
        model,
        &mut graph,
        stat,
        (&[], &|t| crate::plan::lower(model, t)),
    )?;
    // Without the kept graph the next plan lowers again: a warning.
    if let Some(digest) = digest
        && let Err(e) = crate::saved::save(cache_root, state, &keep(&graph, digest, groups))
    {
        warn(e);
    }
    Ok(graph)
}

/// Numbers each distinct label once.
#[derive(Default)]
struct LabelTable<'a> {
    numbers: HashMap<&'a Label, u32>,
    list: Vec<Label>,
}

impl<'a> LabelTable<'a> {
    fn number(&mut self, label: &'a Label) -> u32 {
        let list = &mut self.list;
        *self.numbers.entry(label).or_insert_with(|| {
            list.push(label.clone());
            list.len() as u32 - 1
        })
    }
}

fn keep(graph: &Graph, lowering: Digest, groups: Vec<GroupHash>) -> Kept {
    let mut labels = LabelTable::default();
    // By content: the planner shares one environment per series and arch, and series that
    // agree on every variable then share one again, so the engine makes their toolsets once.
    let mut envs: HashMap<&BTreeMap<String, String>, u32> = HashMap::new();
    let mut env_list: Vec<BTreeMap<String, String>> = Vec::new();
    let mut actions = Vec::with_capacity(graph.len());
    for id in graph.ids() {
        let action = graph.action(id);
        let mut recipe = action.recipe.clone();
        crate::tags::clear(&mut recipe);
        let env = *envs.entry(&*action.env).or_insert_with(|| {
            env_list.push((*action.env).clone());
            env_list.len() as u32 - 1
        });
        actions.push(KeptAction {
            name: action.name.clone(),
            labels: action.labels.iter().map(|l| labels.number(l)).collect(),
            recipe: recipe.into(),
            inputs: action.inputs.clone(),
            deps: action.deps.iter().map(|d| (d.role, d.id.0)).collect(),
            env,
            arch: action.arch,
            builder: action.builder.clone(),
            own: graph.own_part(id),
        });
    }
    let targets = (graph.targets())
        .map(|(kind, label, id)| (kind, labels.number(label), id.0))
        .collect();
    Kept {
        lowering,
        labels: labels.list,
        envs: env_list,
        actions,
        targets,
        groups,
    }
}

/// The kept actions as actions, with their kept own parts; `None` when one names a label or an
/// environment the tables do not hold (a damaged file).
fn restore_actions(
    kept: Vec<KeptAction>,
    table: &[Label],
    envs: Vec<BTreeMap<String, String>>,
) -> Option<(Vec<Action>, Vec<Digest>)> {
    let envs: Vec<Arc<BTreeMap<String, String>>> = envs.into_iter().map(Arc::new).collect();
    let label = |n: &u32| table.get(*n as usize).cloned();
    let mut actions = Vec::with_capacity(kept.len());
    let mut own = Vec::with_capacity(kept.len());
    for a in kept {
        let deps = (a.deps.iter())
            .map(|&(role, id)| Dep {
                role,
                id: ActionId(id),
            })
            .collect();
        let labels: Option<Vec<Label>> = a.labels.iter().map(label).collect();
        let (Some(labels), Some(env)) = (labels, envs.get(a.env as usize)) else {
            return None;
        };
        own.push(a.own);
        actions.push(Action {
            name: a.name,
            labels,
            recipe: a.recipe.into(),
            inputs: a.inputs,
            deps,
            env: env.clone(),
            arch: a.arch,
            builder: a.builder,
        });
    }
    Some((actions, own))
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
    let groups = crate::tags::assign(
        model,
        &mut graph,
        stat,
        (&kept_groups, &|t| crate::plan::lower(model, t)),
    )?;
    // A tag, image or index action whose group hash moved has a new own part; every other
    // action is the one whose own part was kept.
    let before: HashMap<(&str, &TargetKind), &str> = (kept_groups.iter())
        .map(|g| ((g.series.as_str(), &g.kind), g.hash.as_str()))
        .collect();
    let moved: HashSet<(&str, &TargetKind)> = (groups.iter())
        .filter(|g| before.get(&(g.series.as_str(), &g.kind)) != Some(&g.hash.as_str()))
        .map(|g| (g.series.as_str(), &g.kind))
        .collect();
    for (id, own) in graph.ids().zip(own) {
        let action = graph.action(id);
        let stale = action.kind().traits().tagged
            && (action.labels.first())
                .is_none_or(|l| moved.contains(&(l.series.as_str(), &l.kind)));
        if !stale {
            graph.keep_own_part(id, own);
        }
    }
    Ok(Some(graph))
}
