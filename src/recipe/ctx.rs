//! What a recipe works with: the action, its dependencies' outputs, its output and scratch
//! directories, the executor and the log, and the errors it reports.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::action::{Action, Role};
use crate::exec::{Cancel, ExecError, Executor, Identity, Invocation};
use crate::report::Reporter;

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
    /// Notes the links of stored files the recipe makes (see `ledger`).
    pub ledger: &'a crate::ledger::Ledger,
    /// The SHA1 and SHA256 of cached files, remembered by their digest (see `cache::sums`).
    pub sums: &'a crate::cache::Sums,
    /// Compressed layer pieces, remembered by what they hold (see `cache::members`).
    pub members: &'a crate::cache::Members,
    /// Where messages for the user go (never the log's business: the log is the action's).
    pub report: &'a dyn Reporter,
}

/// What a recipe found that belongs outside its outputs, for the engine to record: the first
/// fetch of an unpinned source gives its pin (trust on first use, as Cargo.lock), which goes
/// to kernel.lock. Recipes write nothing but their outputs and their log.
#[derive(Debug, Default)]
pub struct Found {
    /// The source's first URL and the sha256 of what it served.
    pub pin: Option<(String, crate::digest::Sha256)>,
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
    /// A test ran and the kernel failed it: a verdict on what was tested, not on the machine
    /// that tested it. `findings` is the verdict's JSON (`crate::verdict::Verdict`).
    #[error("test failed: {message}")]
    TestFailed { message: String, findings: String },
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
            RecipeError::TestFailed { .. } => {
                Some("the log holds the serial console: kbuild log LABEL --action test")
            }
            _ => None,
        }
    }

    /// The findings of a failed test, as JSON.
    pub fn findings(&self) -> Option<&str> {
        match self {
            RecipeError::TestFailed { findings, .. } => Some(findings),
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
