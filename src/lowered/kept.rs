//! The kept graph's file: actions, labels and environments as tables, recipes in a form a binary
//! format can read, each series' segment with the digest of what lowering it read.

use std::collections::{BTreeMap, HashMap};
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
use crate::label::Label;
use crate::model::BuildSystem;
use crate::tags::GroupHash;

/// [`Recipe`] as kept: externally tagged, as a binary format needs (the key's internally tagged
/// form can only be read from a self-describing one, through a buffer of every field). Both
/// conversions are exhaustive, so a new recipe or field cannot be left out.
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
pub(super) struct KeptAction {
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

/// What names a kept graph, read alone before the rest is decoded (see `saved::load_when`).
#[derive(Serialize, Deserialize, Clone, Copy)]
pub(super) struct Head {
    /// Everything lowering read: when it matches, the graph is restored whole.
    pub lowering: Digest,
    /// What every segment's lowering reads besides its own series (kbuild's executable, the
    /// goal, the workspace, package stamps): when only it matches, unchanged series are
    /// spliced back and the others lowered again.
    pub base: Digest,
}

/// One series' part of the graph.
#[derive(Serialize, Deserialize)]
pub(super) struct KeptSegment {
    pub series: String,
    /// The digest of what lowering the series read; `None` when the graph holds, for one of
    /// its actions, what another series lowered (the same name, other content): not spliced.
    pub digest: Option<Digest>,
    /// Its actions' ids in the graph, in the segment's own order.
    pub ids: Vec<u32>,
}

/// `head` comes first: [`super::lower`] reads it alone to tell whether the rest is worth decoding.
#[derive(Serialize, Deserialize)]
pub(super) struct Kept {
    pub head: Head,
    pub labels: Vec<Label>,
    /// The environments, each once: the engine tells actions' toolsets apart by environment
    /// (by pointer), so actions that share one must share one again.
    pub envs: Vec<BTreeMap<String, String>>,
    pub actions: Vec<KeptAction>,
    /// The graph's target index: (kind, label, action).
    pub targets: Vec<(ActionKind, u32, u32)>,
    pub groups: Vec<GroupHash>,
    /// In the order lowering merged them.
    pub segments: Vec<KeptSegment>,
}

#[derive(Default)]
struct LabelTable<'a> {
    /// foldhash: a kept graph numbers every label of every action (std's SipHash was a third of
    /// keeping it).
    numbers: HashMap<&'a Label, u32, foldhash::fast::RandomState>,
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

pub(super) fn keep(
    graph: &Graph,
    head: Head,
    (groups, segments): (Vec<GroupHash>, Vec<KeptSegment>),
) -> Kept {
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
        head,
        labels: labels.list,
        envs: env_list,
        actions,
        targets,
        groups,
        segments,
    }
}

/// The kept actions as actions, with their kept own parts; `None` when one names a label or an
/// environment the tables do not hold (a damaged file).
pub(super) fn restore_actions(
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
