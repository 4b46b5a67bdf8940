//! Fetch: obtain a source tarball from its first working URL and verify its pinned sha256.

use super::{Ctx, RecipeError, io};
use crate::digest::Sha256;

pub fn run(
    ctx: &Ctx,
    urls: &[String],
    sha256: Option<&str>,
    file: &str,
) -> Result<(), RecipeError> {
    if sha256.is_none() && ctx.locked {
        return Err(RecipeError::failed(
            format!(
                "`{}` is not pinned and --locked forbids pinning it",
                urls[0]
            ),
            "run once without --locked to record its sha256 in kernel.lock, or add sha256= in kernel.kdl",
        ));
    }
    let dest = ctx.out.join(file);
    let mut errors = Vec::new();
    for url in urls {
        match fetch_one(ctx, url, &dest) {
            Ok(()) => {
                return match sha256 {
                    Some(sha256) => verify(&dest, sha256, url),
                    None => pin(ctx, &dest, &urls[0]),
                };
            }
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
    Err("this kbuild fetches file:// sources only; map the series to a local tarball in kernel.local.kdl (see doc/manifest.md)".to_string())
}

/// Trust on first use, as Cargo.lock: the first fetch records what later fetches must match.
fn pin(ctx: &Ctx, path: &std::path::Path, url: &str) -> Result<(), RecipeError> {
    let actual = Sha256::of_file(path).map_err(io(format!("hashing {}", path.display())))?;
    crate::manifest::pins::pin(ctx.workspace, url, &actual).map_err(io("writing kernel.lock"))?;
    let _ = std::io::Write::write_fmt(
        &mut &*ctx.log,
        format_args!("pinned {url} sha256={actual} in kernel.lock\n"),
    );
    Ok(())
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
