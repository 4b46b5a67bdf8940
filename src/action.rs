//! Typed actions: what each step of a kernel build is, what it reads and what it needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::kind::ActionKind;
use crate::label::Label;
use crate::model::BuildSystem;

/// Index of an action in its graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ActionId(pub u32);

impl ActionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How an action uses one of its dependencies; also the key under which the dependency's output
/// digest enters the action's key, so renaming a series does not change keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// One arch's image, in an index.
    Platform(Arch),
    Source,
    Tree,
    Config,
    Check,
    Kernel,
    Modules,
    Headers,
    Tool,
    Image,
    Snapshot,
    Layer,
    /// The layer every image of one tree shares: the source snapshot.
    SourceLayer,
    /// The installed tree of the n-th library a tool `uses`, in the manifest's order.
    Library(u8),
    /// A target's packaged image files.
    Package,
    /// A kernel image's SBOM.
    Sbom,
    /// One arch's attestation manifest, in an index.
    Attestation(Arch),
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Tree => "tree",
            Role::Config => "config",
            Role::Check => "check",
            Role::Kernel => "kernel",
            Role::Modules => "modules",
            Role::Headers => "headers",
            Role::Tool => "tool",
            Role::Image => "image",
            Role::Snapshot => "snapshot",
            Role::Platform(Arch::X86_64) => "image-amd64",
            Role::Platform(Arch::Aarch64) => "image-arm64",
            Role::Platform(Arch::Riscv64) => "image-riscv64",
            Role::Layer => "layer",
            Role::SourceLayer => "source-layer",
            // A second library is `library#2` in a key (`key::record::dep_names`).
            Role::Library(_) => "library",
            Role::Package => "package",
            Role::Sbom => "sbom",
            Role::Attestation(Arch::X86_64) => "attestation-amd64",
            Role::Attestation(Arch::Aarch64) => "attestation-arm64",
            Role::Attestation(Arch::Riscv64) => "attestation-riscv64",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Dep {
    pub role: Role,
    pub id: ActionId,
}

/// The typed parameters of an action. Serialised into the action key as-is, so every field that
/// changes the result belongs here and nothing that does not (no absolute paths).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "recipe", rename_all = "kebab-case")]
pub enum Recipe {
    Fetch {
        urls: Vec<String>,
        /// `None` until kernel.lock pins it: the first fetch records it there.
        sha256: Option<String>,
        file: String,
    },
    /// Unpack the source and apply patches (workspace-relative, in order).
    Patch {
        patches: Vec<String>,
    },
    /// The patched tree as `linux.tar.xz`, as LinuxKit images carry it for perf and debugging.
    Snapshot,
    Headers {
        arch: Arch,
    },
    /// `dir` names the kept Kconfig directory under the build root.
    Configure {
        spec: ConfigSpec,
        dir: String,
    },
    CheckConfig(CheckSpec),
    /// `dirs` names the persistent source and object directories.
    Compile {
        arch: Arch,
        dirs: BuildDirs,
        extra_outputs: Vec<String>,
    },
    Install {
        arch: Arch,
        dirs: BuildDirs,
    },
    Tool(ToolSpec),
    Package(PackageSpec),
    Layer(LayerSpec),
    Image(ImageSpec),
    Index(IndexSpec),
    Tag(TagSpec),
    Test(TestSpec),
    Sbom(SbomSpec),
    Attest(AttestSpec),
}

impl Recipe {
    /// What the action is: one type says both that and how it runs, so they cannot disagree.
    pub fn kind(&self) -> ActionKind {
        match self {
            Recipe::Fetch { .. } => ActionKind::Fetch,
            Recipe::Patch { .. } => ActionKind::Patch,
            Recipe::Snapshot => ActionKind::Snapshot,
            Recipe::Headers { .. } => ActionKind::Headers,
            Recipe::Configure { .. } => ActionKind::Configure,
            Recipe::CheckConfig(_) => ActionKind::CheckConfig,
            Recipe::Compile { .. } => ActionKind::Compile,
            Recipe::Install { .. } => ActionKind::Install,
            Recipe::Tool(_) => ActionKind::Tool,
            Recipe::Package(_) => ActionKind::Package,
            Recipe::Layer(_) => ActionKind::Layer,
            Recipe::Image(_) => ActionKind::Image,
            Recipe::Index(_) => ActionKind::Index,
            Recipe::Tag(_) => ActionKind::Tag,
            Recipe::Test(_) => ActionKind::Test,
            Recipe::Sbom(_) => ActionKind::Sbom,
            Recipe::Attest(_) => ActionKind::Attest,
        }
    }
}

/// A tool such as perf, built by `make -C <dir>` in the kernel tree or in its own source, for
/// one arch; or a library, installed into the action's output for tools to build against.
#[derive(Clone, Debug, Serialize)]
pub struct ToolSpec {
    pub arch: Arch,
    pub dir: String,
    pub binary: String,
    /// More make arguments, the manifest's common ones then the arch's.
    pub args: Vec<String>,
    pub strip: bool,
    /// A library: `make … DESTDIR=<out>`, its installed tree is the output, no binary.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub library: bool,
    /// How the source builds; make's actions are keyed without it, as before CMake existed.
    #[serde(skip_serializing_if = "BuildSystem::is_make")]
    pub build: BuildSystem,
    /// Installs into a staged root that its image holds whole (`binary` is a file in it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub install: bool,
}

impl ToolSpec {
    /// Whether the output is an installed tree (see [`crate::model::installs_tree`]).
    pub fn installs(&self) -> bool {
        crate::model::installs_tree(self.library, self.install, self.build)
    }
}

/// The file name of the patched source in the snapshot's output and in kernel images.
pub const SNAPSHOT: &str = "linux.tar.xz";

/// One image layer: the files of its dependency as a deterministic tar, less `omit`, gzipped
/// unless its content is compressed already. A kernel image has two: the target's files, and
/// the source snapshot, which every arch and variant of a tree share (pushed and stored once).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerSpec {
    pub omit: Vec<String>,
    pub gzip: bool,
}

/// The persistent directories a kernel build works in, relative names under the build root:
/// one source tree per patched tree, shared by every target built from it, and one object tree
/// per target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildDirs {
    pub src: String,
    pub obj: String,
}

/// How a config is put together, shared by the configure and the check actions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigSpec {
    pub arch: Arch,
    /// The committed full config or defconfig.
    pub config: String,
    pub fragments: Vec<String>,
    pub force_off: Vec<String>,
    pub localversion: String,
    /// Whether the resolved config must equal the committed one.
    pub exact: bool,
}

impl ConfigSpec {
    /// The committed config and the fragments, in the order they apply.
    pub fn files(&self) -> Vec<String> {
        std::iter::once(self.config.clone())
            .chain(self.fragments.iter().cloned())
            .collect()
    }
}

/// The check of a resolved config: the defconfig check of its [`ConfigSpec`], and the
/// requirement files every kernel of the series must meet (what containers need).
#[derive(Clone, Debug, Serialize)]
pub struct CheckSpec {
    /// Flattened, so a check without requirements is keyed as before requirements existed.
    #[serde(flatten)]
    pub config: ConfigSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PackageSpec {
    pub builder: String,
    pub version: String,
    pub source_url: String,
    pub source_sha256: String,
    pub patches: Vec<String>,
    /// For tool images: the binary's name under /usr/bin.
    pub tool_binary: Option<String>,
    /// For the image of a tool that installs: the tool's whole installed tree, at the root.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tool_tree: bool,
    /// With the tool's tree, the plain kernel's `kernel-headers.tar` and `kernel-dev.tar`
    /// unpacked at the root, as LinuxKit's kernel-bcc holds them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kernel_files: bool,
}

/// The config and manifest of one per-arch image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSpec {
    pub arch: Arch,
    pub builder: String,
    pub source_url: String,
    pub version: String,
    /// The tag hash, as `org.opencontainers.image.revision`; filled in after lowering.
    pub revision: String,
}

/// A multi-arch index over the images of one series and variant (or tool).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexSpec {
    pub repository: String,
    pub prefix: String,
    /// Filled in after lowering, as for tags.
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TagSpec {
    pub repository: String,
    /// `6.6.71`, `6.6.71-dbg`: the tag up to the hash.
    pub prefix: String,
    pub arch: Arch,
    /// The input hash of the series and variant (see `tags.rs`); filled in after lowering.
    pub hash: String,
}

/// A boot test of one kernel target under qemu (see `recipe/test`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestSpec {
    pub arch: Arch,
    /// The C compiler of the test's static /init: the target's own.
    pub cc: String,
    /// Modules the test loads, with their dependencies (`kunit-example-test`).
    pub modules: Vec<String>,
    /// Seconds the boot may take before it counts as hung.
    pub timeout: u32,
}

/// The SBOM of one kernel or tool image (see `recipe/sbom.rs`): what the image's files,
/// config and build environment cannot say by themselves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SbomSpec {
    /// The source the image is built from: the kernel's (its version), or a tool's own.
    pub source: SourceSpec,
    /// The patches applied, workspace-relative, in order (inputs: their content is keyed).
    pub patches: Vec<String>,
    /// A tool's image: the tool's name, and the libraries built into it from their sources.
    /// (Written even when none: the kept graph's binary format needs every field.)
    pub tool: Option<ToolSbom>,
}

/// A source tarball as an SBOM names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceSpec {
    /// `linux`, or a tool's name.
    pub name: String,
    pub version: String,
    pub url: String,
    /// Its pin; empty until kernel.lock has one.
    pub sha256: String,
    /// The Debian package of a `package=` source.
    pub package: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolSbom {
    pub name: String,
    pub libraries: Vec<SourceSpec>,
}

/// The attestations of one kernel image (see `recipe/attest.rs`): its SBOM and its SLSA
/// provenance, as BuildKit's attestation manifest beside the image in its index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestSpec {
    /// The target label, and its variants (`dbg`, `rt`; empty for the plain kernel).
    pub target: String,
    pub variant: String,
    /// The image's repository and tag prefix (`linuxkit/kernel`, `6.6.71-dbg`): the subject's
    /// name.
    pub repository: String,
    pub prefix: String,
    pub arch: Arch,
    /// This machine's builder id (`builder-id` in kernel.local.kdl): provenance names who built.
    pub builder_id: String,
    pub source_url: String,
    pub source_sha256: String,
    /// Inputs, keyed by content: the patches in order, the config fragments.
    pub patches: Vec<String>,
    pub configs: Vec<String>,
    /// The tag hash of the series and variant: the digest of everything kernel.kdl and kernel/
    /// say about them (`tags.rs`), as the image's tags carry it. Filled in after lowering.
    pub hash: String,
}

/// One node of the action graph.
#[derive(Clone, Debug)]
pub struct Action {
    /// Unique and stable across runs: `compile //6.6.x:dbg-arm64`.
    pub name: String,
    pub labels: Vec<Label>,
    pub recipe: Recipe,
    /// Workspace-relative files whose content enters the key.
    pub inputs: Vec<String>,
    pub deps: Vec<Dep>,
    /// The environment the action's commands see, exactly; shared by the actions of one series
    /// and arch.
    pub env: Arc<BTreeMap<String, String>>,
    /// The arch whose toolchain runs the action, if any.
    pub arch: Option<Arch>,
    /// The builder image of the series, for actions that run commands: where a container
    /// executor runs them. It enters keys only through the executor's identity.
    pub builder: Option<String>,
}

impl Action {
    /// An action with nothing but a name and dependencies, for tests of the graph's machinery.
    #[cfg(test)]
    pub fn bare(name: &str, deps: &[ActionId]) -> Action {
        Action {
            name: name.into(),
            labels: vec![],
            recipe: Recipe::Patch { patches: vec![] },
            inputs: vec![],
            deps: deps
                .iter()
                .map(|&id| Dep {
                    role: Role::Source,
                    id,
                })
                .collect(),
            env: Default::default(),
            arch: None,
            builder: None,
        }
    }

    pub fn kind(&self) -> ActionKind {
        self.recipe.kind()
    }

    pub fn inputs_of(recipe: &Recipe) -> Vec<String> {
        match recipe {
            Recipe::Patch { patches } | Recipe::Sbom(SbomSpec { patches, .. }) => patches.clone(),
            Recipe::Configure { spec, .. } => spec.files(),
            Recipe::Attest(spec) => (spec.patches.iter().chain(&spec.configs).cloned()).collect(),
            Recipe::CheckConfig(check) => {
                let mut files = check.config.files();
                files.extend(check.requires.iter().cloned());
                files
            }
            _ => Vec::new(),
        }
    }
}
