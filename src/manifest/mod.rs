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
