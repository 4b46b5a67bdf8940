//! Reading `kernel.kdl` (KDL v2) into the validated [`Model`], with spanned diagnostics.

mod depth;
mod diag;
mod fields;
mod files;
pub mod machine;
mod nodes;
pub mod packages;
pub mod pins;
mod schema;
mod source;
mod tool;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource};

pub use diag::{ManifestError, Problem, closest};

use crate::model::Model;

pub use files::MANIFEST_FILE;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(help("run kbuild in a directory holding kernel.kdl, or pass `-C DIR`"))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(help(
        "it exists, so kbuild will not build as if it did not: fix its permissions, or remove it"
    ))]
    ReadOptional {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] ManifestError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Newer(#[from] crate::saved::NewerState),
    /// A `package=` source could not be pinned on this machine.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Package(#[from] packages::PackageError),
}

/// The files that decide the model, in the order they apply.
pub const FILES: [&str; 4] = [
    MANIFEST_FILE,
    pins::LOCK_FILE,
    pins::LOCAL_FILE,
    packages::LOCAL_LOCK_FILE,
];

/// The texts of [`FILES`]; only kernel.kdl must exist.
struct Texts {
    manifest: String,
    lock: Option<String>,
    local: Option<String>,
    /// Read for the memo's digest only: [`packages::resolve`] reads and writes it itself.
    local_lock: Option<String>,
}

impl Texts {
    fn read(root: &Path) -> Result<Texts, LoadError> {
        let path = root.join(MANIFEST_FILE);
        let manifest =
            std::fs::read_to_string(&path).map_err(|source| LoadError::Read { path, source })?;
        Ok(Texts {
            manifest,
            lock: optional(root, pins::LOCK_FILE)?,
            local: optional(root, pins::LOCAL_FILE)?,
            local_lock: optional(root, packages::LOCAL_LOCK_FILE)?,
        })
    }

    fn digest(&self) -> crate::digest::Digest {
        let mut h = blake3::Hasher::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        for text in [
            Some(&self.manifest),
            self.lock.as_ref(),
            self.local.as_ref(),
            self.local_lock.as_ref(),
        ] {
            h.update(format!("\n{}\n", text.map_or(0, |t| t.len())).as_bytes());
            h.update(text.map_or(&b""[..], |t| t.as_bytes()));
        }
        crate::digest::Digest::from_bytes(*h.finalize().as_bytes())
    }

    fn parse(self, root: &Path, renew: packages::Renew) -> Result<Model, LoadError> {
        let mut model = parse(root, MANIFEST_FILE, self.manifest)?;
        let named = |name: &str, text: String| Arc::new(NamedSource::new(name, text));
        let pins = match self.lock {
            Some(text) => pins::read_lock(&text)
                .map_err(|p| ManifestError::new(named(pins::LOCK_FILE, text.clone()), p))?,
            None => Default::default(),
        };
        let local = match self.local {
            Some(text) => pins::read_local(&text, &model)
                .map_err(|p| ManifestError::new(named(pins::LOCAL_FILE, text.clone()), p))?,
            None => Default::default(),
        };
        model.builder_id = local.builder_id;
        pins::apply(&mut model, &pins, local.replacements);
        packages::resolve(root, &mut model, renew)?;
        pins::share_series_pins(&mut model);
        Ok(model)
    }
}

/// The text of an optional file: absent is `None`, but a file that exists and cannot be read is
/// an error, never a silently different build (an unpinned source, a dropped replacement).
fn optional(root: &Path, name: &str) -> Result<Option<String>, LoadError> {
    let path = root.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::ReadOptional { path, source }),
    }
}

/// Loads and validates the manifest of the workspace at `root`, with its lock and local files.
pub fn load(root: &Path) -> Result<Model, LoadError> {
    Texts::read(root)?.parse(root, packages::Renew::Nothing)
}

/// Like [`load`], but pins the package sources that `renew` names again (`kbuild pin`).
pub fn load_renewing(root: &Path, renew: packages::Renew) -> Result<Model, LoadError> {
    Texts::read(root)?.parse(root, renew)
}

/// A parsed manifest remembered by the digest of its texts (and of kbuild's version).
#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    digest: crate::digest::Digest,
    model: Model,
}

/// Like [`load`], but reuses the model parsed last time when none of [`FILES`] changed, kept in
/// the saved state of the cache at `cache_root`. KDL parsing dominates a null build otherwise.
/// The files the manifest names are checked again every time; any problem sends it down the
/// full path, which reports with spans.
pub fn load_memoized(
    root: &Path,
    cache_root: &Path,
    warn: &mut dyn FnMut(crate::fsutil::SaveError),
) -> Result<Model, LoadError> {
    let texts = Texts::read(root)?;
    let digest = texts.digest();
    let state = crate::saved::State::Manifest { workspace: root };
    let remembered: Option<Memo> = crate::saved::load(cache_root, state)?;
    if let Some(Memo {
        digest: d,
        mut model,
    }) = remembered
        && d == digest
    {
        model.root = root.to_path_buf();
        if schema::files_present(&model) && packages::current(root, &model) {
            return Ok(model);
        }
    }
    let model = texts.parse(root, packages::Renew::Nothing)?;
    let memo = Memo {
        digest,
        model: model.clone(),
    };
    // Without the memo the next run parses again: a warning.
    if let Err(e) = crate::saved::save(cache_root, state, &memo) {
        warn(e);
    }
    Ok(model)
}

/// Parses manifest text; `root` is where relative paths in it are checked.
pub fn parse(root: &Path, name: &str, text: String) -> Result<Model, LoadError> {
    let doc = parse_kdl(&text);
    let source = Arc::new(NamedSource::new(name, text));
    let doc = doc.map_err(|problems| ManifestError::new(source.clone(), problems))?;
    schema::read(root, &doc).map_err(|problems| ManifestError::new(source, problems).into())
}

/// Parses KDL v2 text, refusing a nesting that would overflow the parser's stack first.
pub(crate) fn parse_kdl(text: &str) -> Result<kdl::KdlDocument, Vec<Problem>> {
    depth::check(text).map_err(|p| vec![p])?;
    kdl::KdlDocument::parse_v2(text).map_err(syntax_problems)
}

/// KDL's own diagnostics, as problems that render against the named manifest.
pub(crate) fn syntax_problems(error: kdl::KdlError) -> Vec<Problem> {
    error
        .diagnostics
        .into_iter()
        .map(|d| {
            let message = format!("invalid KDL: {}", d.message.unwrap_or_else(|| "syntax error".into()));
            let help = d.help.unwrap_or_else(|| {
                "see doc/manifest.md; KDL v2 quotes strings and writes booleans as #true and #false".into()
            });
            Problem::new(message, d.span, d.label.unwrap_or_else(|| "here".into())).help(help)
        })
        .collect()
}
