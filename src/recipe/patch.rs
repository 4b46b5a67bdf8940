//! Patch: unpack the source without its top directory, then apply patches strictly, in order.

use std::io::Write;

use super::{Ctx, RecipeError, io};
use crate::action::Role;
use crate::exec::{ExecError, Invocation};

pub fn run(ctx: &Ctx, patches: &[String]) -> Result<(), RecipeError> {
    let source = single_file(ctx.dep(Role::Source))?;
    let tree = ctx.out.join("tree");
    let limits = crate::unpack::Limits::from_env()
        .map_err(|e| RecipeError::failed(e, "unset it or give a whole number"))?;
    let newest = crate::unpack::unpack(&source, &tree, &limits)
        .map_err(|e| RecipeError::failed(e.to_string(), e.hint()))?;
    let _ = writeln!(
        &*ctx.log,
        "unpacked {} (source date {newest})",
        source.display()
    );
    std::fs::write(ctx.out.join("source-date"), newest.to_string())
        .map_err(io("writing source-date"))?;
    for patch in patches {
        apply(ctx, &tree, patch)?;
    }
    Ok(())
}

fn single_file(dir: &std::path::Path) -> Result<std::path::PathBuf, RecipeError> {
    let mut entries = std::fs::read_dir(dir).map_err(io("reading the fetched source"))?;
    let entry = entries
        .next()
        .ok_or_else(|| RecipeError::failed("the fetch produced no file", "this is a kbuild bug"))?;
    Ok(entry.map_err(io("reading the fetched source"))?.path())
}

/// Zero fuzz and no reversed patches: a patch applies exactly or the action fails.
fn apply(ctx: &Ctx, tree: &std::path::Path, patch: &str) -> Result<(), RecipeError> {
    let inv = Invocation::new("patch", tree)
        .args([
            "-p1",
            "-F0",
            "-N",
            "--no-backup-if-mismatch",
            "-r",
            "-",
            "-i",
        ])
        .arg(ctx.input(patch).display().to_string());
    let log_start = ctx.log.metadata().map(|m| m.len()).unwrap_or(0);
    match ctx.run(inv) {
        Err(RecipeError::Exec(ExecError::Failed { .. })) => {
            return Err(describe_failure(ctx, patch, log_start));
        }
        other => other?,
    }
    refuse_escaping_links(ctx, tree, patch)
}

/// Only a git patch with mode 120000 creates a symlink; one that leads out of the tree is refused
/// as it would be in a tarball, before a later patch or the build could follow it.
fn refuse_escaping_links(
    ctx: &Ctx,
    tree: &std::path::Path,
    patch: &str,
) -> Result<(), RecipeError> {
    let text = std::fs::read(ctx.input(patch)).map_err(io(format!("reading {patch}")))?;
    if !text.windows(6).any(|w| w == b"120000") {
        return Ok(());
    }
    match crate::unpack::escaping_link(tree).map_err(io("checking the patched tree's symlinks"))? {
        None => Ok(()),
        Some(link) => Err(RecipeError::failed(
            format!(
                "patch `{patch}` makes `{}` a symlink that leads outside the tree",
                link.display()
            ),
            "a kernel patch never needs that: remove the symlink from the patch",
        )),
    }
}

/// Turns patch's output into "hunk N of `file`" so the user knows where to look.
fn describe_failure(ctx: &Ctx, patch: &str, log_start: u64) -> RecipeError {
    let log = std::fs::read_to_string(ctx.log_path()).unwrap_or_default();
    let tail = log.get(log_start as usize..).unwrap_or(&log);
    let mut file = None;
    let mut hunks = Vec::new();
    for line in tail.lines() {
        if let Some(f) = line.strip_prefix("patching file ") {
            file = Some(f.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("Hunk #") {
            hunks.push(format!(
                "hunk #{} of `{}`",
                rest.trim_end_matches('.'),
                file.clone().unwrap_or_else(|| "?".into())
            ));
        }
        if line.contains("can't find file to patch") || line.contains("No file to patch") {
            hunks.push("a file it patches does not exist in the tree".into());
        }
        if line.contains("Reversed (or previously applied) patch detected") {
            hunks.push("it looks already applied (reversed or duplicate patch)".into());
        }
    }
    let detail = if hunks.is_empty() {
        "it does not apply".to_string()
    } else {
        hunks.join("; ")
    };
    RecipeError::failed(
        format!("patch `{patch}` does not apply: {detail}"),
        "rebase the patch onto this kernel version (git format-patch from a tree at this tag), or remove it",
    )
}

/// The patched tree as `linux.tar.xz` with a top directory `linux/`, deterministic.
pub fn snapshot(ctx: &Ctx) -> Result<(), RecipeError> {
    let tree = ctx.dep(Role::Tree).join("tree");
    let dest = ctx.out.join(crate::action::SNAPSHOT);
    crate::archive::write_tar_xz(&tree, &dest, "linux", ctx.source_date()?)
        .map_err(io("writing linux.tar.xz"))
}
