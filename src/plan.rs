//! Lowering: targets of the model become a graph of shared, typed actions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::action::{
    Action, ActionId, AttestSpec, BuildDirs, CheckSpec, ConfigSpec, Dep, ImageSpec, IndexSpec,
    LayerSpec, PackageSpec, Recipe, Role, SNAPSHOT, SbomSpec, SourceSpec, TagSpec, TestSpec,
    ToolSbom, ToolSpec,
};
use crate::arch::Arch;
use crate::graph::{CycleError, Graph};
use crate::kind::ActionKind;
use crate::label::{Label, TargetKind};
use crate::model::{Model, Series, Source, Tool, VariantSet, expand};

/// What a lowering is for: the targets' images, or those and a boot test of each kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Goal {
    #[default]
    Build,
    Test,
}

impl Goal {
    /// The patterns under which state about this lowering is kept (the kept graph, the run
    /// fingerprint): a tested build's are not a plain build's.
    pub fn patterns(self, labels: &[String]) -> Vec<String> {
        match self {
            Goal::Build => labels.to_vec(),
            Goal::Test => std::iter::once("--test".to_string())
                .chain(labels.iter().cloned())
                .collect(),
        }
    }
}

/// Lowers `targets` into a graph. Actions that do not depend on the variant or arch are shared.
pub fn lower(model: &Model, targets: &[Label]) -> Result<Graph, PlanError> {
    lower_for(model, targets, Goal::Build)
}

/// [`lower`], with a boot test of each kernel target when the goal is testing. Each series is
/// lowered on its own ([`lower_segment`]) and the segments are merged in the order their series
/// first appear: after an edit of one series, a kept graph splices the others back in and gets
/// exactly this graph (see `src/lowered/`).
pub fn lower_for(model: &Model, targets: &[Label], goal: Goal) -> Result<Graph, PlanError> {
    let mut graph = Graph::default();
    for (_, labels) in segments(targets) {
        graph.absorb(lower_segment(model, &labels, goal)?.into_actions());
    }
    Ok(graph)
}

/// The targets by series, each series in the order it first appears, its targets in theirs.
pub fn segments(targets: &[Label]) -> Vec<(&str, Vec<Label>)> {
    let mut segments: Vec<(&str, Vec<Label>)> = Vec::new();
    for label in targets {
        match segments.iter_mut().find(|(s, _)| *s == label.series) {
            Some((_, labels)) => labels.push(label.clone()),
            None => segments.push((&label.series, vec![label.clone()])),
        }
    }
    segments
}

/// Lowers `targets`, all of one series, into a graph of their own. What it reads of the model
/// is what [`crate::lowered`]'s segment digest covers: the series, the variants and tools its
/// targets name (and the libraries those use), the defaults, builders and builder id.
pub fn lower_segment(model: &Model, targets: &[Label], goal: Goal) -> Result<Graph, PlanError> {
    let mut lowerer = Lowerer::new(model);
    for label in targets {
        lowerer.target(label);
        // Every image carries its SBOM and provenance.
        lowerer.attest(label);
        if let (Goal::Test, TargetKind::Kernel(set)) = (goal, &label.kind) {
            lowerer.test(label, &set.clone());
        }
    }
    // Targets of one series and kind share an index, in the order they were asked for.
    let mut groups: Vec<Vec<&Label>> = Vec::new();
    for label in targets {
        match groups
            .iter_mut()
            .find(|g| g[0].series == label.series && g[0].kind == label.kind)
        {
            Some(group) => group.push(label),
            None => groups.push(vec![label]),
        }
    }
    for group in groups {
        lowerer.index(&group);
    }
    lowerer.graph.spread_labels();
    lowerer.finish()?;
    Ok(lowerer.graph)
}

/// Lowers only what resolves the config of each target, for `kbuild config update`.
pub fn lower_configure(
    model: &Model,
    targets: &[Label],
) -> Result<(Graph, Vec<ActionId>), PlanError> {
    let mut lowerer = Lowerer::new(model);
    let ids = targets
        .iter()
        .map(|label| lowerer.configure(label, &label.variants().cloned().unwrap_or_default()))
        .collect();
    lowerer.finish()?;
    Ok((lowerer.graph, ids))
}

/// Why targets could not be lowered.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cycle(#[from] CycleError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    PatchDir(#[from] PatchDirError),
}

struct Lowerer<'a> {
    model: &'a Model,
    graph: Graph,
    /// The first patch directory that could not be listed: lowering fails with it rather than
    /// plan a kernel without its patches.
    patch_error: std::cell::RefCell<Option<PatchDirError>>,
    /// Toolchain environments by series and arch, built once and shared.
    envs: HashMap<(String, Arch), Arc<BTreeMap<String, String>>>,
}

/// The name of the index action of `label`'s series and kind: `index //6.6.x:dbg`.
fn index_name(label: &Label) -> String {
    match &label.kind {
        TargetKind::Kernel(set) if set.is_plain() => format!("index //{}", label.series),
        TargetKind::Kernel(set) => format!("index //{}:{}", label.series, set.name()),
        TargetKind::Tool(tool) => format!("index //{}:{tool}", label.series),
    }
}

/// Which of a target's variants bring patches: they decide which patched tree it builds from.
fn patching_variants(model: &Model, set: &VariantSet) -> Vec<String> {
    model
        .variants_of(set)
        .filter(|v| v.patches.is_some())
        .map(|v| v.name.clone())
        .collect()
}

/// Every patch directory the targets' trees are made from (present on disk or not).
pub fn patch_dirs(model: &Model, targets: &[Label]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for label in targets {
        let Some(series) = model.series(&label.series) else {
            continue;
        };
        let set = label.variants().cloned().unwrap_or_default();
        let variant_dirs = model.variants_of(&set).filter_map(|v| v.patches.as_ref());
        for dir in variant_dirs.chain(std::iter::once(&series.patches)) {
            let dir = expand(dir, &series.name, None);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// A patch directory that exists but cannot be listed, or holds a name kbuild cannot carry:
/// building without its patches would cache an unpatched kernel under a valid key.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PatchDirError {
    #[error("cannot read the patch directory `{dir}`: {source}")]
    #[diagnostic(help(
        "fix its permissions; kbuild builds nothing rather than a kernel without its patches"
    ))]
    Unreadable { dir: String, source: std::io::Error },
    #[error("patch `{path}` leads outside the workspace, to `{}`", real.display())]
    #[diagnostic(help(
        "copy the patch (or the directory) into the workspace instead of linking to it"
    ))]
    Outside {
        path: String,
        real: std::path::PathBuf,
    },
    #[error("patch directory `{dir}` holds a file whose name is not UTF-8: {name}")]
    #[diagnostic(help("rename it (patch names appear in keys and logs)"))]
    BadName { dir: String, name: String },
}

/// `*.patch` files of a directory in numeric-prefix order; only a missing directory has none.
pub fn read_patch_dir(root: &Path, dir: &str) -> Result<Vec<String>, PatchDirError> {
    let unreadable = |source| PatchDirError::Unreadable {
        dir: dir.to_string(),
        source,
    };
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(e)),
    };
    if let Some(real) = crate::fsutil::leaves_root(root, dir) {
        return Err(PatchDirError::Outside {
            path: dir.to_string(),
            real,
        });
    }
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let linked = entry.file_type().is_ok_and(|t| t.is_symlink());
        let name = entry.file_name();
        let name = name.into_string().map_err(|n| PatchDirError::BadName {
            dir: dir.to_string(),
            name: n.to_string_lossy().into_owned(),
        })?;
        if !name.ends_with(".patch") {
            continue;
        }
        // Only a symlink can lead out: the directory itself was checked above.
        let path = format!("{dir}/{name}");
        if linked && let Some(real) = crate::fsutil::leaves_root(root, &path) {
            return Err(PatchDirError::Outside { path, real });
        }
        names.push(name);
    }
    names.sort_by_key(|n| (numeric_prefix(n), n.clone()));
    Ok(names.into_iter().map(|n| format!("{dir}/{n}")).collect())
}

/// The patches of `dir`, in the order they apply; a directory that is not there has none.
pub fn patch_files(root: &Path, dir: &str) -> Result<Vec<String>, PatchDirError> {
    read_patch_dir(root, dir)
}

/// Every patch directory the targets use, with its listing: each must be readable before
/// anything is lowered.
pub fn read_patch_dirs(
    model: &Model,
    targets: &[Label],
) -> Result<Vec<(String, Vec<String>)>, PatchDirError> {
    (patch_dirs(model, targets).into_iter())
        .map(|dir| Ok((dir.clone(), read_patch_dir(&model.root, &dir)?)))
        .collect()
}

impl<'a> Lowerer<'a> {
    fn new(model: &'a Model) -> Lowerer<'a> {
        Lowerer {
            model,
            graph: Graph::default(),
            patch_error: Default::default(),
            envs: HashMap::new(),
        }
    }

    /// The lowered graph's checks: every patch directory listed, no cycle.
    fn finish(&mut self) -> Result<(), PlanError> {
        if let Some(e) = self.patch_error.take() {
            return Err(e.into());
        }
        Ok(self.graph.check_acyclic()?)
    }

    /// The patches of `dir`; the first directory that cannot be listed is kept for `finish`.
    fn patch_files(&self, dir: &str) -> Vec<String> {
        read_patch_dir(&self.model.root, dir).unwrap_or_else(|e| {
            self.patch_error.borrow_mut().get_or_insert(e);
            Vec::new()
        })
    }
}

fn numeric_prefix(name: &str) -> u64 {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u64::MAX)
}

/// What one lowering step contributes besides the action's kind, name and label.
struct Spec {
    deps: Vec<Dep>,
    recipe: Recipe,
    /// The arch whose toolchain runs the action; `None` for in-process actions.
    arch: Option<Arch>,
}

fn dep(role: Role, id: ActionId) -> Dep {
    Dep { role, id }
}

impl Lowerer<'_> {
    /// The action called `name`: the existing one with `label` added, or a new one from `build`.
    /// Checking first means a shared action is built (and its patch directories read) once.
    fn lowered(
        &mut self,
        name: String,
        label: &Label,
        build: impl FnOnce(&mut Self) -> Spec,
    ) -> ActionId {
        if let Some(id) = self.graph.find(&name) {
            self.graph.add_label(id, label);
            return id;
        }
        let spec = build(self);
        let kind = spec.recipe.kind();
        let env = match spec.arch.filter(|_| kind.uses_toolchain()) {
            Some(arch) => self.shared_env(&label.series, arch),
            None => Arc::default(),
        };
        let inputs = Action::inputs_of(&spec.recipe);
        let builder = kind
            .uses_toolchain()
            .then(|| self.series(label).builder_for(spec.arch).to_string());
        self.graph.add(Action {
            name,
            labels: vec![label.clone()],
            recipe: spec.recipe,
            inputs,
            deps: spec.deps,
            env,
            arch: spec.arch,
            builder,
        })
    }

    fn series(&self, label: &Label) -> &Series {
        self.model
            .series(&label.series)
            .expect("labels come from the model")
    }

    fn shared_env(&mut self, series: &str, arch: Arch) -> Arc<BTreeMap<String, String>> {
        let key = (series.to_string(), arch);
        if let Some(env) = self.envs.get(&key) {
            return env.clone();
        }
        let env = Arc::new(self.toolchain_env(series, arch));
        self.envs.insert(key, env.clone());
        env
    }

    /// The environment of every command that runs the kernel's make: reproducible by construction.
    fn toolchain_env(&self, series: &str, arch: Arch) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("ARCH".into(), arch.make_arch().into());
        if self.model.defaults.llvm {
            // clang is a cross compiler for every target: no CROSS_COMPILE prefix.
            env.insert("LLVM".into(), "1".into());
        } else {
            env.insert("CROSS_COMPILE".into(), self.model.cross_compile(arch));
        }
        env.insert("KBUILD_BUILD_USER".into(), "kbuild".into());
        env.insert("KBUILD_BUILD_HOST".into(), "kbuild".into());
        env.insert("KBUILD_BUILD_VERSION".into(), "1".into());
        env.insert("LC_ALL".into(), "C".into());
        env.insert("TZ".into(), "UTC".into());
        if let Some(epoch) = self.model.series(series).and_then(|s| s.source_date_epoch) {
            env.insert("KBUILD_BUILD_TIMESTAMP".into(), format!("@{epoch}"));
            env.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
        }
        env
    }

    fn target(&mut self, label: &Label) {
        match &label.kind {
            TargetKind::Kernel(set) => {
                let set = set.clone();
                self.tag(label, &set);
            }
            TargetKind::Tool(tool) => {
                let tool = tool.clone();
                self.tool_tag(label, &tool);
            }
        }
    }

    fn fetch(&mut self, label: &Label) -> ActionId {
        let source = self.series(label).source.clone();
        self.fetch_source(label, source)
    }

    /// One fetch per tarball and pin, whoever names it: a series, a tool, or both.
    fn fetch_source(&mut self, label: &Label, source: Source) -> ActionId {
        let pin = source
            .sha256
            .as_ref()
            .map_or("unpinned", |sha| &sha.as_str()[..12]);
        let file = source.file_name().to_string();
        let name = format!("fetch {file}@{pin}");
        self.lowered(name, label, |_| Spec {
            deps: vec![],
            recipe: Recipe::Fetch {
                sha256: source.sha256.as_ref().map(ToString::to_string),
                urls: source.urls,
                file,
            },
            arch: None,
        })
    }

    /// The tree a target builds from: `//6.6.x` for plain patches, `//6.6.x:rt` with rt's.
    fn tree_name(&self, label: &Label, set: &VariantSet) -> String {
        let patching = patching_variants(self.model, set);
        if patching.is_empty() {
            format!("//{}", label.series)
        } else {
            format!("//{}:{}", label.series, patching.join("-"))
        }
    }

    /// Variant patches first, in declaration order, then the series patches.
    fn patch_list(&self, label: &Label, set: &VariantSet) -> Vec<String> {
        let series = self.series(label);
        let variant_dirs = self
            .model
            .variants_of(set)
            .filter_map(|v| v.patches.as_ref());
        variant_dirs
            .chain(std::iter::once(&series.patches))
            .flat_map(|dir| self.patch_files(&expand(dir, &series.name, None)))
            .collect()
    }

    fn patch(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let name = format!("patch {}", self.tree_name(label, set));
        self.lowered(name, label, |me| Spec {
            deps: vec![dep(Role::Source, me.fetch(label))],
            recipe: Recipe::Patch {
                patches: me.patch_list(label, set),
            },
            arch: None,
        })
    }

    fn snapshot(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let name = format!("snapshot {}", self.tree_name(label, set));
        self.lowered(name, label, |me| Spec {
            deps: vec![dep(Role::Tree, me.patch(label, set))],
            recipe: Recipe::Snapshot,
            arch: None,
        })
    }

    /// `linux.tar.xz` as a layer of its own, uncompressed: xz already did that.
    fn source_layer(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let name = format!("layer {}", self.tree_name(label, set));
        self.lowered(name, label, |me| Spec {
            deps: vec![
                dep(Role::Image, me.snapshot(label, set)),
                dep(Role::Tree, me.patch(label, set)),
            ],
            recipe: Recipe::Layer(LayerSpec {
                omit: vec![],
                gzip: false,
            }),
            arch: None,
        })
    }

    fn headers(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let tree_name = self.tree_name(label, set);
        let sep = if tree_name.contains(':') { "-" } else { ":" };
        let name = format!("headers {tree_name}{sep}{}", label.arch);
        self.lowered(name, label, |me| Spec {
            deps: vec![dep(Role::Tree, me.patch(label, set))],
            recipe: Recipe::Headers { arch: label.arch },
            arch: Some(label.arch),
        })
    }

    fn config_spec(&self, label: &Label, set: &VariantSet) -> ConfigSpec {
        let series = self.series(label);
        let mut spec = ConfigSpec {
            arch: label.arch,
            config: series.config_path(label.arch),
            fragments: Vec::new(),
            force_off: Vec::new(),
            localversion: self.model.defaults.localversion.clone(),
            exact: true,
        };
        for variant in self.model.variants_of(set) {
            let fragments = variant
                .fragments
                .iter()
                .map(|f| expand(f, &series.name, Some(label.arch)));
            spec.fragments.extend(fragments);
            spec.force_off.extend(variant.force_off.iter().cloned());
            spec.exact &= variant.exact_config;
        }
        // Spelled as the set's name is (`-linuxkit-rt-dbg`), whatever the declaration order.
        for variant in set
            .spelled()
            .into_iter()
            .filter_map(|p| self.model.variant(p))
        {
            spec.localversion.push_str(&variant.localversion_suffix);
        }
        spec
    }

    fn configure(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("configure {label}"), label, |me| Spec {
            deps: vec![dep(Role::Tree, me.patch(label, set))],
            recipe: Recipe::Configure {
                spec: me.config_spec(label, set),
                dir: format!("{}/kconfig", me.build_dirs(label, set).obj),
            },
            arch: Some(label.arch),
        })
    }

    fn check(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("check-config {label}"), label, |me| Spec {
            // The tree's Kconfig files explain a dropped option.
            deps: vec![
                dep(Role::Config, me.configure(label, set)),
                dep(Role::Tree, me.patch(label, set)),
            ],
            recipe: Recipe::CheckConfig(CheckSpec {
                config: me.config_spec(label, set),
                requires: (me.series(label).requires.iter())
                    .map(|f| expand(f, &label.series, Some(label.arch)))
                    .collect(),
            }),
            arch: None,
        })
    }

    /// The source directory is named after the tree (`6.1.x/src`, `6.1.x/src-rt`), so targets
    /// with the same patches share it; the object directory is the target's own.
    fn build_dirs(&self, label: &Label, set: &VariantSet) -> BuildDirs {
        let patching = patching_variants(self.model, set);
        let src = if patching.is_empty() {
            "src".to_string()
        } else {
            format!("src-{}", patching.join("-"))
        };
        BuildDirs {
            src: format!("{}/{src}", label.series),
            obj: format!("{}/{}", label.series, label.name()),
        }
    }

    fn compile(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("compile {label}"), label, |me| Spec {
            deps: vec![
                dep(Role::Tree, me.patch(label, set)),
                dep(Role::Config, me.configure(label, set)),
                dep(Role::Check, me.check(label, set)),
            ],
            recipe: Recipe::Compile {
                arch: label.arch,
                dirs: me.build_dirs(label, set),
                extra_outputs: me
                    .model
                    .variants_of(set)
                    .flat_map(|v| v.outputs.iter().cloned())
                    .collect(),
            },
            arch: Some(label.arch),
        })
    }

    fn install(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("install {label}"), label, |me| Spec {
            deps: vec![
                dep(Role::Tree, me.patch(label, set)),
                dep(Role::Config, me.configure(label, set)),
                dep(Role::Kernel, me.compile(label, set)),
            ],
            recipe: Recipe::Install {
                arch: label.arch,
                dirs: me.build_dirs(label, set),
            },
            arch: Some(label.arch),
        })
    }

    /// The patches of the tree `label` builds from, as its patch action (lowered before any
    /// package) has them: the patch directories are read once per tree, not once per target.
    fn lowered_patches(&self, label: &Label, set: &VariantSet) -> Vec<String> {
        let id = self
            .graph
            .find(&format!("patch {}", self.tree_name(label, set)));
        match id.map(|id| &self.graph.action(id).recipe) {
            Some(Recipe::Patch { patches }) => patches.clone(),
            _ => self.patch_list(label, set),
        }
    }

    fn package_spec(
        &self,
        label: &Label,
        set: &VariantSet,
        tool_binary: Option<String>,
    ) -> PackageSpec {
        let series = self.series(label);
        PackageSpec {
            builder: series.builder.clone(),
            version: series.version.to_string(),
            source_url: series.source.urls[0].clone(),
            source_sha256: series
                .source
                .sha256
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            patches: self.lowered_patches(label, set),
            tool_binary,
            tool_tree: false,
            kernel_files: false,
        }
    }

    fn package(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("package {label}"), label, |me| {
            let mut deps = vec![
                dep(Role::Kernel, me.compile(label, set)),
                dep(Role::Modules, me.install(label, set)),
                dep(Role::Headers, me.headers(label, set)),
            ];
            if me.model.defaults.source_snapshot {
                deps.push(dep(Role::Snapshot, me.snapshot(label, set)));
            }
            Spec {
                deps,
                recipe: Recipe::Package(me.package_spec(label, set, None)),
                arch: None,
            }
        })
    }

    /// The boot test of a kernel target: its image, its modules and its resolved config.
    fn test(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        self.lowered(format!("test {label}"), label, |me| Spec {
            deps: vec![
                dep(Role::Kernel, me.compile(label, set)),
                dep(Role::Modules, me.install(label, set)),
                dep(Role::Config, me.configure(label, set)),
            ],
            recipe: Recipe::Test(TestSpec {
                arch: label.arch,
                cc: format!("{}gcc", me.model.cross_compile(label.arch)),
                modules: me.series(label).test_modules.clone(),
                timeout: me.model.defaults.test_timeout_for(label.arch),
            }),
            arch: Some(label.arch),
        })
    }

    /// The kernel's source as an SBOM names it.
    fn kernel_source(&self, label: &Label) -> SourceSpec {
        let series = self.series(label);
        source_spec("linux", series.version.to_string(), &series.source)
    }

    /// The SBOM of a target's image: its files and tree (the source date); a kernel's release
    /// and config; the source, patches and a tool's libraries.
    fn sbom(&mut self, label: &Label) -> ActionId {
        self.lowered(format!("sbom {label}"), label, |me| {
            let package = (me.graph.of(ActionKind::Package, label))
                .expect("a target's package is lowered before its SBOM");
            let (spec, mut deps) = match &label.kind {
                TargetKind::Kernel(set) => {
                    let spec = SbomSpec {
                        source: me.kernel_source(label),
                        patches: me.lowered_patches(label, set),
                        tool: None,
                    };
                    let deps = vec![
                        dep(Role::Kernel, me.compile(label, set)),
                        dep(Role::Config, me.configure(label, set)),
                        dep(Role::Tree, me.patch(label, set)),
                    ];
                    (spec, deps)
                }
                TargetKind::Tool(name) => {
                    let tool = me
                        .model
                        .tool(name)
                        .expect("tools come from the model")
                        .clone();
                    let spec = me.tool_sbom(label, &tool);
                    (spec, vec![dep(Role::Tree, me.tool_tree(label, &tool))])
                }
            };
            deps.insert(0, dep(Role::Package, package));
            Spec {
                deps,
                recipe: Recipe::Sbom(spec),
                arch: Some(label.arch),
            }
        })
    }

    /// A tool's SBOM: its own source or the kernel's (with the plain tree's patches), and the
    /// libraries it links that come from their own sources.
    fn tool_sbom(&self, label: &Label, tool: &Tool) -> SbomSpec {
        let own = |t: &Tool| {
            t.source
                .as_ref()
                .map(|s| source_spec(&t.name, version_of(s), s))
        };
        let libraries = (tool.uses.iter())
            .filter_map(|name| self.model.tool(name).and_then(own))
            .collect();
        let (source, patches) = match own(tool) {
            Some(source) => (source, Vec::new()),
            None => (
                self.kernel_source(label),
                self.lowered_patches(label, &VariantSet::default()),
            ),
        };
        SbomSpec {
            source,
            patches,
            tool: Some(ToolSbom {
                name: tool.name.clone(),
                libraries,
            }),
        }
    }

    /// The attestation manifest of a target's image: its SBOM and its provenance.
    fn attest(&mut self, label: &Label) -> ActionId {
        let sbom = self.sbom(label);
        self.lowered(format!("attest {label}"), label, |me| {
            let image = (me.graph.of(ActionKind::Image, label))
                .expect("a target's image is lowered before its attestations");
            let Recipe::Sbom(spec) = me.graph.action(sbom).recipe.clone() else {
                unreachable!("an sbom action has an sbom recipe");
            };
            let (image_name, variant) = me.naming(label);
            let tag = me.tag_spec(label, image_name, &variant);
            let configs = match &label.kind {
                TargetKind::Kernel(set) => me.config_spec(label, set).files(),
                TargetKind::Tool(_) => Vec::new(),
            };
            Spec {
                deps: vec![dep(Role::Image, image), dep(Role::Sbom, sbom)],
                recipe: Recipe::Attest(AttestSpec {
                    target: label.to_string(),
                    variant,
                    repository: tag.repository,
                    prefix: tag.prefix,
                    arch: label.arch,
                    builder_id: (me.model.builder_id.clone())
                        .unwrap_or_else(|| crate::provenance::UNNAMED_BUILDER.into()),
                    source_url: spec.source.url,
                    source_sha256: spec.source.sha256,
                    patches: spec.patches,
                    configs,
                    hash: String::new(),
                }),
                arch: Some(label.arch),
            }
        })
    }

    fn tag_spec(&self, label: &Label, image: String, variant: &str) -> TagSpec {
        let version = &self.series(label).version;
        TagSpec {
            repository: format!("{}/{image}", self.model.defaults.org),
            prefix: if variant.is_empty() {
                version.to_string()
            } else {
                format!("{version}-{variant}")
            },
            arch: label.arch,
            hash: String::new(),
        }
    }

    /// The image name and tag prefix of a target: `kernel` and `6.6.71-dbg`, `kernel-perf` and `6.6.71`.
    fn naming(&self, label: &Label) -> (String, String) {
        match &label.kind {
            TargetKind::Kernel(set) => (self.model.defaults.image.clone(), set.name()),
            TargetKind::Tool(tool) => (
                format!("{}-{tool}", self.model.defaults.image),
                String::new(),
            ),
        }
    }

    /// package → layer → image → tag, for kernels and tools alike.
    fn publish(&mut self, label: &Label, package: ActionId) -> ActionId {
        let set = label.variants().cloned().unwrap_or_default();
        // The tree gives the source date, the layer's mtimes and the image's creation time.
        // A kernel's snapshot, if it has one, is a layer of its own.
        let snapshot =
            matches!(label.kind, TargetKind::Kernel(_)) && self.model.defaults.source_snapshot;
        let layer = self.lowered(format!("layer {label}"), label, |me| Spec {
            deps: vec![
                dep(Role::Image, package),
                dep(Role::Tree, me.patch(label, &set)),
            ],
            recipe: Recipe::Layer(LayerSpec {
                omit: if snapshot {
                    vec![SNAPSHOT.into()]
                } else {
                    vec![]
                },
                gzip: true,
            }),
            arch: None,
        });
        let mut layers = vec![dep(Role::Layer, layer)];
        if snapshot {
            layers.push(dep(Role::SourceLayer, self.source_layer(label, &set)));
        }
        let image = self.lowered(format!("image {label}"), label, |me| {
            let series = me.series(label);
            let spec = ImageSpec {
                arch: label.arch,
                builder: series.builder.clone(),
                source_url: series.source.urls[0].clone(),
                version: series.version.to_string(),
                revision: String::new(),
            };
            let mut deps = layers;
            deps.push(dep(Role::Tree, me.patch(label, &set)));
            Spec {
                deps,
                recipe: Recipe::Image(spec),
                arch: None,
            }
        });
        let (image_name, variant) = self.naming(label);
        self.lowered(format!("tag {label}"), label, |me| Spec {
            deps: vec![dep(Role::Image, image)],
            recipe: Recipe::Tag(me.tag_spec(label, image_name, &variant)),
            arch: None,
        })
    }

    fn tag(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let package = self.package(label, set);
        self.publish(label, package)
    }

    /// One multi-arch index per series and kind over the arches of `group` (all requested).
    fn index(&mut self, group: &[&Label]) -> ActionId {
        let first = group[0];
        let name = index_name(first);
        let mut deps: Vec<Dep> = group
            .iter()
            .map(|label| {
                let image = self
                    .graph
                    .of(ActionKind::Image, label)
                    .expect("images are lowered before indexes");
                dep(Role::Platform(label.arch), image)
            })
            .collect();
        // Each image's attestations, after the images, in the same order.
        deps.extend(group.iter().filter_map(|label| {
            let attest = self.graph.of(ActionKind::Attest, label)?;
            Some(dep(Role::Attestation(label.arch), attest))
        }));
        let (image_name, variant) = self.naming(first);
        let tag = self.tag_spec(first, image_name, &variant);
        let spec = IndexSpec {
            repository: tag.repository,
            prefix: tag.prefix,
            hash: String::new(),
        };
        let id = self.lowered(name, first, |_| Spec {
            deps,
            recipe: Recipe::Index(spec),
            arch: None,
        });
        for label in &group[1..] {
            self.graph.add_label(id, label);
        }
        id
    }

    /// A tool's own tarball, unpacked as a kernel's is but with no patches; shared by every
    /// series and arch that builds from it.
    fn unpack(&mut self, label: &Label, source: &Source) -> ActionId {
        let pin = source
            .sha256
            .as_ref()
            .map_or("unpinned", |sha| &sha.as_str()[..12]);
        let name = format!("unpack {}@{pin}", source.file_name());
        self.lowered(name, label, |me| Spec {
            deps: vec![dep(Role::Source, me.fetch_source(label, source.clone()))],
            recipe: Recipe::Patch { patches: vec![] },
            arch: None,
        })
    }

    /// The tree a tool builds in: its own source, or the plain kernel tree.
    fn tool_tree(&mut self, label: &Label, tool: &Tool) -> ActionId {
        match &tool.source {
            Some(source) => self.unpack(label, source),
            None => self.patch(label, &VariantSet::default()),
        }
    }

    /// Tools build from the plain tree or their own source, against the libraries they use;
    /// their images hold the binary under /usr/bin.
    fn tool(&mut self, label: &Label, tool: &Tool) -> ActionId {
        self.lowered(format!("tool {label}"), label, |me| {
            let mut deps = me.tool_deps(label, tool);
            for (i, name) in tool.uses.iter().enumerate() {
                let library = me
                    .model
                    .tool(name)
                    .expect("the manifest checks `uses`")
                    .clone();
                let role = Role::Library(u8::try_from(i).expect("a handful of libraries"));
                deps.push(dep(role, me.library(label, &library)));
            }
            Spec {
                deps,
                recipe: Recipe::Tool(tool_spec(label, tool)),
                arch: Some(label.arch),
            }
        })
    }

    /// A library for one series and arch, built for the tools of `label` that use it.
    fn library(&mut self, label: &Label, library: &Tool) -> ActionId {
        let name = format!("library //{}:{}-{}", label.series, library.name, label.arch);
        self.lowered(name, label, |me| Spec {
            deps: me.tool_deps(label, library),
            recipe: Recipe::Tool(tool_spec(label, library)),
            arch: Some(label.arch),
        })
    }

    /// The tree, and the kernel's headers where the tool asks for them.
    fn tool_deps(&mut self, label: &Label, tool: &Tool) -> Vec<Dep> {
        let mut deps = vec![dep(Role::Tree, self.tool_tree(label, tool))];
        if tool.needs_headers {
            let plain = VariantSet::default();
            deps.push(dep(Role::Headers, self.headers(label, &plain)));
        }
        deps
    }

    fn tool_tag(&mut self, label: &Label, name: &str) -> ActionId {
        let tool = self
            .model
            .tool(name)
            .expect("tools come from the model")
            .clone();
        let plain = VariantSet::default();
        let package = self.lowered(format!("package {label}"), label, |me| {
            // A tool that installs puts its whole tree in the image; others their one binary.
            let binary = (!tool.installs()).then(|| tool.binary.clone());
            let mut spec = me.package_spec(label, &plain, binary);
            spec.tool_tree = tool.installs();
            spec.kernel_files = tool.kernel_files;
            let mut deps = vec![dep(Role::Tool, me.tool(label, &tool))];
            if tool.kernel_files {
                // The plain kernel's, of the same series and arch, as LinuxKit's image has.
                let kernel = Label {
                    kind: TargetKind::Kernel(plain.clone()),
                    ..label.clone()
                };
                deps.push(dep(Role::Headers, me.headers(&kernel, &plain)));
                deps.push(dep(Role::Modules, me.install(&kernel, &plain)));
            }
            Spec {
                deps,
                recipe: Recipe::Package(spec),
                arch: None,
            }
        });
        self.publish(label, package)
    }
}

/// A source tarball as an SBOM names it.
fn source_spec(name: &str, version: String, source: &Source) -> SourceSpec {
    SourceSpec {
        name: name.to_string(),
        version,
        url: source.urls[0].clone(),
        sha256: (source.sha256.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default(),
        package: source.package.clone(),
    }
}

/// A tool's version as its tarball's name says it: `bcc-0.31.0` of `bcc-0.31.0.tar.gz`.
fn version_of(source: &Source) -> String {
    let name = source.file_name();
    let stem = [".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext));
    stem.unwrap_or(name).to_string()
}

fn tool_spec(label: &Label, tool: &Tool) -> ToolSpec {
    ToolSpec {
        arch: label.arch,
        dir: tool.dir.clone(),
        binary: tool.binary.clone(),
        args: tool.args_for(label.arch),
        strip: tool.strip,
        library: tool.library,
        build: tool.build,
        install: tool.install,
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_prefix;

    #[test]
    fn numeric_prefix_orders_numbers_not_strings() {
        assert!(numeric_prefix("2-a.patch") < numeric_prefix("10-b.patch"));
        assert_eq!(numeric_prefix("x.patch"), u64::MAX);
    }
}
