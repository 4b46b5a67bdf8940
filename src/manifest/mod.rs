//! Reading `kernel.kdl` (KDL v2) into the validated [`Model`], with spanned diagnostics.

mod diag;
mod nodes;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource};

pub use diag::{ManifestError, Problem, closest};

use crate::model::Model;

pub const MANIFEST_FILE: &str = "kernel.kdl";

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(help("run kbuild in a directory holding kernel.kdl, or pass `-C DIR`"))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] ManifestError),
}

/// Loads and validates the manifest of the workspace at `root`.
pub fn load(root: &Path) -> Result<Model, LoadError> {
    let path = root.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read { path, source })?;
    parse(root, MANIFEST_FILE, text)
}

/// A parsed manifest remembered by the digest of its text (and of kbuild's version).
#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    digest: crate::digest::Digest,
    model: Model,
}

/// Like [`load`], but reuses the model parsed last time when `kernel.kdl` is unchanged, kept in
/// `memo`. KDL parsing dominates a null build otherwise. The files the manifest names are checked
/// again every time; any problem sends it down the full path, which reports with spans.
pub fn load_memoized(root: &Path, memo: &Path) -> Result<Model, LoadError> {
    let path = root.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read { path, source })?;
    let digest = crate::digest::Digest::of_bytes(
        format!("{}\n{text}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let remembered: Option<Memo> = std::fs::read(memo)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(Memo {
        digest: d,
        mut model,
    }) = remembered
        && d == digest
    {
        model.root = root.to_path_buf();
        if schema::files_present(&model) {
            return Ok(model);
        }
    }
    let model = parse(root, MANIFEST_FILE, text)?;
    if let Ok(bytes) = serde_json::to_vec(&Memo {
        digest,
        model: model.clone(),
    }) {
        // Best effort: without the memo the next run parses again.
        let _ = crate::fsutil::write_atomic(memo, &bytes);
    }
    Ok(model)
}

/// Parses manifest text; `root` is where relative paths in it are checked.
pub fn parse(root: &Path, name: &str, text: String) -> Result<Model, LoadError> {
    let parsed = kdl::KdlDocument::parse_v2(&text);
    let source = Arc::new(NamedSource::new(name, text));
    let doc = parsed.map_err(|e| ManifestError::new(source.clone(), syntax_problems(e)))?;
    schema::read(root, &doc).map_err(|problems| ManifestError::new(source, problems).into())
}

/// KDL's own diagnostics, as problems that render against the named manifest.
fn syntax_problems(error: kdl::KdlError) -> Vec<Problem> {
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
