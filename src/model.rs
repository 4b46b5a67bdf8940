//! The validated workspace model that the manifest parser produces and the planner lowers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::digest::Sha256;

/// Everything `kernel.kdl` declares, checked and with conventions filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// The directory holding `kernel.kdl`; every path in the model is relative to it.
    #[serde(skip)]
    pub root: PathBuf,
    pub defaults: Defaults,
    /// In declaration order, which is also the order in which composed variants apply.
    pub variants: Vec<Variant>,
    pub tools: Vec<Tool>,
    pub series: Vec<Series>,
    /// Docker endpoints of native builders per arch (`builders { aarch64 "tcp://…" }`); an arch
    /// with none is built on the local daemon, cross-compiled where it is foreign.
    #[serde(default)]
    pub endpoints: BTreeMap<Arch, String>,
    /// Set when the run uses those endpoints (the docker executor): their arches are native.
    #[serde(skip)]
    pub native_builds: bool,
    /// This machine's builder id (`builder-id` in kernel.local.kdl), for provenance.
    #[serde(default)]
    pub builder_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Defaults {
    pub org: String,
    pub image: String,
    pub arches: Vec<Arch>,
    pub builder: String,
    pub localversion: String,
    /// Cross prefixes per arch, overriding the GNU defaults.
    pub cross_compile: BTreeMap<Arch, String>,
    /// Build with clang and the LLVM tools (`LLVM=1`) instead of a GNU cross toolchain.
    #[serde(default)]
    pub llvm: bool,
    /// Builder images for one arch, overriding `builder` (`builder "img" arch="aarch64"`).
    #[serde(default)]
    pub arch_builders: BTreeMap<Arch, String>,
    /// The executor `kbuild run` uses when none is given: `host` or `docker`.
    #[serde(default)]
    pub executor: Option<String>,
    /// Whether kernel images carry the patched source as `/linux.tar.xz`, as LinuxKit's do.
    /// Compressing it costs about 28 CPU-seconds per tree, which no kernel waits for.
    #[serde(default = "yes")]
    pub source_snapshot: bool,
    /// Modules every boot test loads (`test-modules`), unless a series names its own.
    #[serde(default)]
    pub test_modules: Vec<String>,
    /// Seconds a boot test may take before it counts as hung (`test-timeout`).
    #[serde(default = "test_timeout")]
    pub test_timeout: u32,
    /// Per-arch timeouts over `test_timeout` (`test-timeout 600 arch="riscv64"`).
    #[serde(default)]
    pub arch_test_timeouts: BTreeMap<Arch, u32>,
    /// Files of Kconfig settings every kernel must have (`requires`): what containers need.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// Five minutes: a full-size arm64 kernel boots in about one under TCG on a loaded 2-core
/// machine; a hang costs the whole wait.
pub const TEST_TIMEOUT: u32 = 300;

fn test_timeout() -> u32 {
    TEST_TIMEOUT
}

impl Defaults {
    /// The seconds a boot test of `arch` may take.
    pub fn test_timeout_for(&self, arch: Arch) -> u32 {
        self.arch_test_timeouts
            .get(&arch)
            .copied()
            .unwrap_or(self.test_timeout)
    }
}

fn yes() -> bool {
    true
}

/// A variant such as `dbg` or `rt`: what it adds on top of the plain kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// Config fragments; `{series}` and `{arch}` are substituted.
    pub fragments: Vec<String>,
    pub force_off: Vec<String>,
    pub localversion_suffix: String,
    /// Extra files the image carries, such as `vmlinux`.
    pub outputs: Vec<String>,
    /// Whether the resolved config must equal the committed one (the defconfig check).
    pub exact_config: bool,
    /// A patch directory applied before the series patches; `{series}` is substituted.
    pub patches: Option<String>,
    /// The arches the variant exists for (LinuxKit's rt: x86_64 and aarch64); `None` for all.
    /// A set with such a part is built only where every part exists.
    #[serde(default)]
    pub arches: Option<Vec<Arch>>,
}

impl Variant {
    pub fn builds_for(&self, arch: Arch) -> bool {
        self.arches.as_ref().is_none_or(|a| a.contains(&arch))
    }
}

/// A tool image such as `perf`, built from the kernel tree or from a source of its own; or a
/// library such as libtraceevent, which has no image and which tools build against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    /// The directory that `make -C` builds: in the kernel tree, or in the tool's own source.
    pub dir: String,
    /// The tool's own tarball (bcc, libtraceevent), fetched, pinned and replaced as a series'
    /// source is; `None` builds from the kernel tree.
    #[serde(default)]
    pub source: Option<Source>,
    /// A library: `make install` into its output, no image; tools name it in `uses`.
    #[serde(default)]
    pub library: bool,
    /// The libraries this tool builds against, in order.
    #[serde(default)]
    pub uses: Vec<String>,
    /// How the tool's source builds: its own make, or CMake (bcc).
    #[serde(default)]
    pub build: BuildSystem,
    /// The tool installs into a staged root (`DESTDIR`, prefix `/usr`) and its image holds that
    /// whole tree, as LinuxKit's kernel-bcc does, instead of one static binary in `/usr/bin`.
    #[serde(default)]
    pub install: bool,
    /// The image of a tool that installs also holds the plain kernel's headers and development
    /// files (`usr/include`, `usr/src/linux-headers-<release>`), as LinuxKit's kernel-bcc does:
    /// bcc compiles its programs against them where it runs.
    #[serde(default)]
    pub kernel_files: bool,
    /// The file the tool's make leaves in its output directory; for a tool that installs, a
    /// file its install must leave, relative to the staged root.
    pub binary: String,
    /// Whether the tool builds against the kernel's UAPI headers.
    pub needs_headers: bool,
    /// More arguments for the tool's make (variables such as `NO_JVMTI=1`, or goals), for
    /// every arch.
    pub args: Vec<String>,
    /// Arguments for one arch only, after the common ones (a cross build lacks the target's
    /// libraries, for example).
    pub arch_args: BTreeMap<Arch, Vec<String>>,
    /// Whether the binary is stripped of its symbols and debug info before packaging.
    pub strip: bool,
}

/// Whether a tool's output is an installed tree rather than one binary: a library's, one
/// asked with `install #true`, and every CMake build, whose way out is `cmake --install`.
pub fn installs_tree(library: bool, install: bool, build: BuildSystem) -> bool {
    library || install || build == BuildSystem::Cmake
}

impl Tool {
    /// See [`installs_tree`].
    pub fn installs(&self) -> bool {
        installs_tree(self.library, self.install, self.build)
    }

    /// The make arguments for building the tool for `arch`.
    pub fn args_for(&self, arch: Arch) -> Vec<String> {
        let mut args = self.args.clone();
        args.extend(self.arch_args.get(&arch).into_iter().flatten().cloned());
        args
    }
}

/// The build system of a tool's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildSystem {
    /// `make -C <dir> O=<obj>`, as the kernel's tools/ and most libraries build.
    #[default]
    Make,
    /// `cmake -S <dir> -B <obj>`, then `cmake --build` and `cmake --install`.
    Cmake,
}

impl BuildSystem {
    pub fn is_make(&self) -> bool {
        *self == BuildSystem::Make
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// Mirrors, tried in order.
    pub urls: Vec<String>,
    /// Pinned in kernel.kdl or kernel.lock; `None` until the first fetch pins it.
    pub sha256: Option<Sha256>,
    /// The source kernel.kdl names, when a local replacement (kernel.local.kdl) took its place.
    pub replaced: Option<String>,
    /// The distribution package that installs this `file://` tarball (`package=`): its pin and
    /// version are this machine's, kept in kernel.local.lock and renewed when the package moves.
    #[serde(default)]
    pub package: Option<String>,
}

impl Source {
    /// The file name the tarball is stored under, taken from the first URL.
    pub fn file_name(&self) -> &str {
        let url = &self.urls[0];
        url.rsplit('/').next().unwrap_or(url)
    }

    /// The file a `file://` URL names: absolute, or relative to the workspace `root`.
    pub fn local_path(url: &str, root: &std::path::Path) -> Option<PathBuf> {
        url.strip_prefix("file://").map(|path| root.join(path))
    }
}

/// LinuxKit's debug variant, spelled last in a composed name.
pub const DEBUG_VARIANT: &str = "dbg";

/// Puts variant names in the order a composed name spells them (see [`VariantSet::spelled`]).
pub fn spelling_order(parts: &mut [&str]) {
    parts.sort_by_key(|p| (*p == DEBUG_VARIANT, *p));
}

/// A set of composed variants, e.g. `rt-dbg`; empty for the plain kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct VariantSet(pub Vec<String>);

impl VariantSet {
    pub fn is_plain(&self) -> bool {
        self.0.is_empty()
    }

    /// The parts as labels, tags and LOCALVERSION spell them, whatever the order of declaration:
    /// LinuxKit's `<ver>-rt-dbg`, its variant (`EXTRA`) before its debug build (`DEBUG`). So `dbg`
    /// comes last and any other parts before it in alphabetical order. The parts themselves stay
    /// in declaration order, the order in which their patches and fragments apply.
    pub fn spelled(&self) -> Vec<&str> {
        let mut parts: Vec<&str> = self.0.iter().map(String::as_str).collect();
        spelling_order(&mut parts);
        parts
    }

    /// `rt-dbg`, or the empty string for plain.
    pub fn name(&self) -> String {
        self.spelled().join("-")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub version: semver::Version,
    /// No `version` was written: it is read from the package's tarball (`package=` sources).
    #[serde(default)]
    pub version_from_source: bool,
    pub source: Source,
    pub arches: Vec<Arch>,
    pub builder: String,
    /// Per-arch builder images, over `builder`; the defaults' ones unless the series sets its own.
    #[serde(default)]
    pub arch_builders: BTreeMap<Arch, String>,
    /// The variant sets built besides plain.
    pub variants: Vec<VariantSet>,
    pub tools: Vec<String>,
    pub deprecated: bool,
    /// Per-arch full config, `{arch}` substituted, relative to the root.
    pub config: String,
    /// The series patch directory, relative to the root; may be absent on disk.
    pub patches: String,
    /// Seconds since the epoch used for KBUILD_BUILD_TIMESTAMP.
    pub source_date_epoch: Option<u64>,
    /// The modules its boot tests load, the defaults' unless it names its own.
    #[serde(default)]
    pub test_modules: Vec<String>,
    /// Requirement files (`{series}` and `{arch}` substituted): the defaults' and its own.
    #[serde(default)]
    pub requires: Vec<String>,
}

impl Series {
    pub fn config_path(&self, arch: Arch) -> String {
        expand(&self.config, &self.name, Some(arch))
    }

    /// The builder image that builds `arch` (or the series' own for arch-less work).
    pub fn builder_for(&self, arch: Option<Arch>) -> &str {
        arch.and_then(|a| self.arch_builders.get(&a))
            .unwrap_or(&self.builder)
    }
}

impl Model {
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Every source the model names: each series', then each tool's own.
    pub fn sources_mut(&mut self) -> impl Iterator<Item = (&str, &mut Source)> {
        let series = self
            .series
            .iter_mut()
            .map(|s| (s.name.as_str(), &mut s.source));
        let tools = self
            .tools
            .iter_mut()
            .filter_map(|t| t.source.as_mut().map(|s| (t.name.as_str(), s)));
        series.chain(tools)
    }

    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    pub fn variants_of<'a>(&'a self, set: &'a VariantSet) -> impl Iterator<Item = &'a Variant> {
        set.0.iter().filter_map(|name| self.variant(name))
    }

    /// Whether `set` is built for `arch`: every part exists there (plain always is).
    pub fn set_builds_for(&self, set: &VariantSet, arch: Arch) -> bool {
        self.variants_of(set).all(|v| v.builds_for(arch))
    }

    /// The cross prefix for `arch`: none where a native builder endpoint builds it.
    pub fn cross_compile(&self, arch: Arch) -> String {
        if self.native_builds && self.endpoints.contains_key(&arch) {
            return String::new();
        }
        match self.defaults.cross_compile.get(&arch) {
            Some(prefix) => prefix.clone(),
            None => arch.default_cross_compile().to_string(),
        }
    }
}

/// Substitutes `{series}` and `{arch}` (the kernel spelling) in a path template.
pub fn expand(template: &str, series: &str, arch: Option<Arch>) -> String {
    let out = template.replace("{series}", series);
    match arch {
        Some(arch) => out.replace("{arch}", arch.kernel_name()),
        None => out,
    }
}
