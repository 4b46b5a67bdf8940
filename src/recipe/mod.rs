//! Recipes: what each action kind does, given its materialised dependencies and an executor.

mod build_dir;
mod cmake;

mod compile;
mod configure;
mod fetch;
pub mod image;
mod install;
mod library;
mod package;
mod patch;
mod tool;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::action::{Action, Recipe, Role};
use crate::exec::{Cancel, ExecError, Executor, Identity, Invocation, Toolset};

/// A dependency's outputs, as a directory.
#[derive(Clone, Debug)]
pub struct DepOutput {
    pub dir: PathBuf,
    pub manifest: std::sync::Arc<crate::cache::OutputManifest>,
}

impl DepOutput {
    pub fn digest(&self) -> crate::digest::Digest {
        self.manifest.digest()
    }
}

/// Everything a recipe may touch. Outputs go to `out`; `work` is private scratch space.
pub struct Ctx<'a> {
    pub action: &'a Action,
    pub workspace: &'a Path,
    pub out: &'a Path,
    pub work: &'a Path,
    pub deps: &'a BTreeMap<Role, DepOutput>,
    pub exec: &'a dyn Executor,
    pub log: &'a File,
    pub log_path: &'a Path,
    pub cancel: &'a Cancel,
    pub jobs: usize,
    /// Where persistent kernel build directories live.
    pub build_root: &'a Path,
    /// Refuse to pin unpinned sources in kernel.lock (`--locked`, for CI).
    pub locked: bool,
    /// The identity of whoever runs the commands, as keyed (host programs, builder image).
    pub toolchain: &'a Identity,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{message}")]
    Failed { message: String, hint: String },
}

impl RecipeError {
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> RecipeError {
        RecipeError::Failed {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            RecipeError::Failed { hint, .. } => Some(hint),
            RecipeError::Exec(e) => e.hint(),
            _ => None,
        }
    }
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RecipeError {
    let what = what.into();
    move |source| RecipeError::Io { what, source }
}

impl Ctx<'_> {
    pub fn dep(&self, role: Role) -> &Path {
        &self.dep_output(role).dir
    }

    pub fn dep_output(&self, role: Role) -> &DepOutput {
        self.deps
            .get(&role)
            .expect("the planner gives every recipe its dependencies")
    }

    /// The source date recorded by the patch action, for reproducible timestamps. Unreadable is
    /// an error: a silent 0 would stamp every file and image 1970.
    pub fn source_date(&self) -> Result<u64, RecipeError> {
        let path = self.dep(Role::Tree).join("source-date");
        let text = std::fs::read_to_string(&path)
            .map_err(io(format!("reading the source date {}", path.display())))?;
        text.trim().parse().map_err(|_| {
            RecipeError::failed(
                format!(
                    "the source date in {} is not a number: {text:?}",
                    path.display()
                ),
                "the patch action's output is damaged: run `kbuild cache verify`",
            )
        })
    }

    /// Runs one command with the action's environment through the executor.
    pub fn run(&self, inv: Invocation) -> Result<(), RecipeError> {
        use std::io::Write;
        let mut inv = inv.envs(&self.action.env);
        inv.arch = self.action.arch;
        inv.builder = self.action.builder.clone();
        inv.background = self.action.kind().is_background();
        let _ = writeln!(&*self.log, "$ {}", inv.display());
        Ok(self.exec.run(&inv, self.log, self.cancel)?)
    }

    /// A `make` invocation against the kernel tree at `src`, building in `obj`.
    pub fn make(&self, src: &Path, obj: &Path) -> Invocation {
        Invocation::new("make", src)
            .arg(format!("O={}", obj.display()))
            .arg(format!("-j{}", self.jobs))
    }

    pub fn log_path(&self) -> &Path {
        self.log_path
    }

    pub fn input(&self, rel: &str) -> PathBuf {
        self.workspace.join(rel)
    }
}

/// Runs the recipe of `ctx.action`.
pub fn execute(ctx: &Ctx) -> Result<(), RecipeError> {
    match &ctx.action.recipe {
        Recipe::Fetch { urls, sha256, file } => fetch::run(ctx, urls, sha256.as_deref(), file),
        Recipe::Patch { patches } => patch::run(ctx, patches),
        Recipe::Snapshot => patch::snapshot(ctx),
        Recipe::Headers { arch } => compile::headers(ctx, *arch),
        Recipe::Configure { spec, dir } => configure::configure(ctx, spec, dir),
        Recipe::CheckConfig(spec) => configure::check(ctx, spec),
        Recipe::Compile {
            arch,
            dirs,
            extra_outputs,
        } => compile::compile(ctx, *arch, dirs, extra_outputs),
        Recipe::Install { arch, dirs } => compile::install(ctx, *arch, dirs),
        Recipe::Tool(spec) => tool::tool(ctx, spec),
        Recipe::Package(spec) => package::package(ctx, spec),
        Recipe::Layer(spec) => image::layer(ctx, spec),
        Recipe::Image(spec) => image::image(ctx, spec),
        Recipe::Index(spec) => image::index(ctx, spec),
        Recipe::Tag(spec) => package::tag(ctx, spec),
    }
}

/// What the action asks of its executor; its identity enters the key of an action that runs
/// commands.
pub fn toolset_of(action: &Action) -> Toolset {
    Toolset {
        tools: tools_of(action),
        arch: action.arch,
        builder: action.builder.clone(),
    }
}

fn tools_of(action: &Action) -> Vec<String> {
    match &action.recipe {
        Recipe::Patch { .. } => vec!["patch".into()],
        Recipe::Tool(spec) => {
            let mut tools = toolchain(&action.env);
            if spec.strip {
                tools.push(tool::strip_for(&action.env));
            }
            tools.extend(static_libraries(&action.env));
            // A library's make installs with `install`; a tool finds libraries by pkg-config.
            tools.extend(["install".to_string(), "pkg-config".to_string()]);
            if spec.build == crate::model::BuildSystem::Cmake {
                tools.extend(cmake_tools(&action.env));
            }
            tools
        }
        _ if action.kind().uses_toolchain() => toolchain(&action.env),
        _ => Vec::new(),
    }
}

/// Every program a kernel build runs, directly or through make and gcc, for the toolchain `env`
/// selects: the compiler driver and its own programs (`… -print-prog-name=cc1`), the binutils
/// of the target prefix, the host compiler (Kconfig and scripts are host programs), and what
/// Kconfig and the build call. Kconfig writes the versions of `as`, `ld` and `pahole` into
/// `.config`, so each is part of the identity, and so is its absence (no pahole, no BTF).
fn toolchain(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut tools = vec!["make".to_string()];
    if env.contains_key("LLVM") {
        for t in [
            "clang",
            "ld.lld",
            "llvm-objcopy",
            "llvm-objdump",
            "llvm-nm",
            "llvm-ar",
            "llvm-strip",
            "llvm-readelf",
        ] {
            tools.push(t.into());
        }
    } else {
        let cross = env.get("CROSS_COMPILE").map_or("", String::as_str);
        for t in [
            "gcc", "as", "ld", "ld.bfd", "objcopy", "objdump", "nm", "ar", "strip", "readelf",
        ] {
            tools.push(format!("{cross}{t}"));
        }
        for internal in ["cc1", "collect2", "lto-wrapper"] {
            tools.push(format!("{cross}gcc -print-prog-name={internal}"));
        }
        if !cross.is_empty() {
            for t in ["gcc", "gcc -print-prog-name=cc1", "as", "ld"] {
                tools.push(t.into());
            }
        }
    }
    for t in [
        "perl", "flex", "bison", "bc", "openssl", "python3", "xz", "cpio", "depmod", "pahole", "sh",
    ] {
        tools.push(t.into());
    }
    tools
}

/// CMake and the C++ compiler it configures beside the C one (bcc is C++).
fn cmake_tools(env: &BTreeMap<String, String>) -> Vec<String> {
    let cxx = if env.contains_key("LLVM") {
        "clang++".to_string()
    } else {
        let cross = env.get("CROSS_COMPILE").map_or("", String::as_str);
        format!("{cross}g++")
    };
    vec!["cmake".to_string(), cxx]
}

/// The static libraries a statically linked tool may link, as its compiler finds them.
fn static_libraries(env: &BTreeMap<String, String>) -> Vec<String> {
    let cc = match env.get("CROSS_COMPILE") {
        _ if env.contains_key("LLVM") => "clang".to_string(),
        Some(cross) => format!("{cross}gcc"),
        None => "gcc".to_string(),
    };
    [
        "libc.a",
        "libm.a",
        "libpthread.a",
        "libdl.a",
        "librt.a",
        "libelf.a",
        "libz.a",
        "liblzma.a",
        "libzstd.a",
        "libcrypto.a",
    ]
    .iter()
    .map(|lib| format!("{cc} -print-file-name={lib}"))
    .collect()
}
