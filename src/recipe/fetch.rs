//! Fetch: obtain a source tarball from its first working URL and verify its pinned sha256.

use super::{Ctx, RecipeError, io};
use crate::digest::Sha256;

pub fn run(ctx: &Ctx, urls: &[String], sha256: &str, file: &str) -> Result<(), RecipeError> {
    let dest = ctx.out.join(file);
    let mut errors = Vec::new();
    for url in urls {
        match fetch_one(ctx, url, &dest) {
            Ok(()) => return verify(&dest, sha256, url),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(RecipeError::failed(
        format!("cannot fetch `{file}`:\n  {}", errors.join("\n  ")),
        "check the URL and your network, or add a mirror to the series' `source` node",
    ))
}

fn fetch_one(ctx: &Ctx, url: &str, dest: &std::path::Path) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("file://") {
        // `file://sources/x.tar` (no third slash) is relative to the workspace.
        return std::fs::copy(ctx.workspace.join(path), dest)
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    Err("only file:// sources can be fetched by this version of kbuild".to_string())
}

/// A mismatch fails the action, so nothing of the download reaches the cache.
fn verify(path: &std::path::Path, expected: &str, url: &str) -> Result<(), RecipeError> {
    let actual = Sha256::of_file(path).map_err(io(format!("hashing {}", path.display())))?;
    if actual.as_str() == expected {
        return Ok(());
    }
    Err(RecipeError::failed(
        format!("sha256 mismatch for {url}\n  expected {expected}\n  actual   {actual}"),
        "if the new tarball is the one you want, put its sha256 in kernel.kdl; otherwise the download is corrupt or tampered with",
    ))
}
