//! `kbuild verify`: are the cached results what their inputs make? Each action of the chosen
//! targets runs again with the cache bypassed (its dependencies' cached outputs as inputs, so
//! each action is judged alone), in fresh build directories, with another `-j` and another
//! umask, and its output is compared file by file with the cached entry, or with the remote
//! cache's entry for the same key (as `guix challenge` compares substitutes). A mismatch keeps
//! both trees and, when Debian's diffoscope is installed, says how they differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::action::ActionId;
use crate::build::{Built, Request};
use crate::cache::{CacheError, OutputEntry, OutputManifest};
use crate::engine::Report;
use crate::kind::ActionKind;
use crate::recipe::{Ctx, DepOutput};

/// What the rebuilt output is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Against {
    /// The local cache's entry.
    Local,
    /// The remote cache's entry for the same key.
    Remote,
}

/// How one action's rebuild compared.
#[derive(Debug)]
pub enum Finding {
    Same {
        files: usize,
    },
    /// The paths that differ (missing on one side, or other content), both trees kept.
    Differs {
        paths: Vec<String>,
        kept: PathBuf,
        diffoscope: Option<String>,
    },
    /// Nothing to compare with (the remote has no entry for the key).
    Unmatched(String),
    /// The rebuild itself failed.
    Failed(String),
}

/// The umask of the rebuilds: not the usual 022, so a result that depends on it shows.
const UMASK: libc::mode_t = 0o027;

/// Rebuilds every action of `built` but the fetches (the source's pin checks those), in graph
/// order, each compared as `against` says. Mismatches are kept under `keep`.
pub fn verify(
    request: &Request,
    built: &Built,
    (jobs, against, keep): (usize, Against, &Path),
) -> miette::Result<Vec<(ActionId, Finding)>> {
    let mut engine = request.engine();
    engine.records = true;
    let plan = engine.plan(&built.graph)?;
    let scratch = request.cache.scratch()?;
    let build_root = scratch.path().join("build");
    // Safe: umask only swaps the process's file-creation mask, restored below.
    let umask = unsafe { libc::umask(UMASK) };
    let mut findings = Vec::new();
    for id in built.graph.ids() {
        if request.cancel.is_cancelled() {
            break;
        }
        let action = built.graph.action(id);
        if action.kind() == ActionKind::Fetch {
            continue;
        }
        request
            .report
            .say(&format!("kbuild: verifying {}", action.name));
        let finding = one(
            request,
            (built, &plan),
            id,
            (jobs, against, keep),
            &build_root,
        )
        .unwrap_or_else(Finding::Failed);
        findings.push((id, finding));
    }
    unsafe { libc::umask(umask) };
    Ok(findings)
}

/// Rebuilds one action into a scratch directory and compares.
fn one(
    request: &Request,
    (built, plan): (&Built, &Report),
    id: ActionId,
    (jobs, against, keep): (usize, Against, &Path),
    build_root: &Path,
) -> Result<Finding, String> {
    let cache = request.cache;
    let action = built.graph.action(id);
    let key = plan.status[id.index()]
        .key()
        .ok_or("it has no key: build it first")?;
    let record = plan.records[id.index()]
        .as_ref()
        .ok_or("its key record is unknown")?;
    let scratch = cache.scratch().map_err(|e| e.to_string())?;
    let (reference, hit) = match reference(request, action.kind(), key, against)? {
        Ok(found) => found,
        Err(unmatched) => return Ok(unmatched),
    };
    let deps = dep_outputs(request, plan, action)?;
    let (out, work) = (scratch.path().join("out"), scratch.path().join("work"));
    for dir in [&out, &work] {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let log_path = scratch.path().join("log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let ctx = Ctx {
        action,
        workspace: request.root,
        out: &out,
        work: &work,
        deps: &deps,
        exec: request.exec,
        log: &log,
        log_path: &log_path,
        cancel: &request.cancel,
        jobs,
        build_root,
        locked: true,
        toolchain: &record.executor,
        ledger: cache.ledger(),
        // The rebuild computes every sum and compresses every piece again: nothing of the build
        // it checks is taken.
        sums: &crate::cache::Sums::uncached(),
        members: &crate::cache::Members::uncached(),
        report: &*request.report,
    };
    crate::recipe::execute(&ctx).map_err(|e| format!("the rebuild failed: {e}"))?;
    let paths = differing(&reference, &out).map_err(|e| format!("comparing: {e}"))?;
    if paths.is_empty() {
        return Ok(Finding::Same {
            files: reference.entries().len(),
        });
    }
    // The other side's files, to keep: the local tree, or the remote's fetched.
    let cached = match (&hit, request.remote.as_ref()) {
        (Some(hit), Some(remote)) => remote
            .fetch(hit, key, &scratch.path().join("remote"))
            .and_then(|manifest| cache.tree(&manifest).ok()),
        _ => cache.tree(&reference).ok(),
    };
    let kept = keep.join(crate::cache::log_name(&action.name));
    let diffoscope = keep_both(&kept, cached.as_deref(), (&out, &log_path))?;
    Ok(Finding::Differs {
        paths,
        kept,
        diffoscope,
    })
}

/// The result the rebuild is compared with, and the remote hit it came from; or why there is
/// none to compare with.
fn reference(
    request: &Request,
    kind: ActionKind,
    key: crate::key::ActionKey,
    against: Against,
) -> Result<Result<(OutputManifest, Option<crate::remote::Hit>), Finding>, String> {
    match against {
        Against::Local => {
            let manifest =
                (request.cache.lookup(key)).ok_or("it is not in the cache: build it first")?;
            Ok(Ok((manifest, None)))
        }
        Against::Remote => {
            let remote = request
                .remote
                .as_ref()
                .ok_or("no remote cache is configured")?;
            let Some(hit) = remote.lookup(kind, key) else {
                let why = "the remote cache has no entry for its key";
                return Ok(Err(Finding::Unmatched(why.into())));
            };
            // Its manifest names every file's digest: files are fetched only to keep them.
            Ok(Ok((hit.manifest.clone(), Some(hit))))
        }
    }
}

/// The cached outputs of the action's dependencies, by role.
fn dep_outputs(
    request: &Request,
    plan: &Report,
    action: &crate::action::Action,
) -> Result<BTreeMap<crate::action::Role, DepOutput>, String> {
    let cache = request.cache;
    let mut deps = BTreeMap::new();
    for dep in &action.deps {
        let dep_key = plan.status[dep.id.index()]
            .key()
            .ok_or("a dependency has no key")?;
        let manifest = cache
            .lookup(dep_key)
            .ok_or("a dependency is not in the cache")?;
        let dir = cache.tree(&manifest).map_err(|e| e.to_string())?;
        let manifest = Arc::new(manifest);
        deps.insert(dep.role, DepOutput { dir, manifest });
    }
    Ok(deps)
}

/// Keeps the rebuilt tree and its log, and the other side's tree when there is one (a remote
/// entry kept by its manifest alone has none: the digests are the whole comparison); gives
/// diffoscope's report on the two.
fn keep_both(
    kept: &Path,
    cached: Option<&Path>,
    (out, log): (&Path, &Path),
) -> Result<Option<String>, String> {
    let failed = |e: std::io::Error| format!("keeping the trees: {e}");
    let _ = std::fs::remove_dir_all(kept);
    std::fs::create_dir_all(kept).map_err(failed)?;
    std::fs::rename(out, kept.join("rebuilt")).map_err(failed)?;
    let _ = std::fs::copy(log, kept.join("rebuild.log"));
    let Some(cached) = cached else {
        return Ok(None);
    };
    copy_tree(cached, &kept.join("cached")).map_err(failed)?;
    Ok(diffoscope(&kept.join("cached"), &kept.join("rebuilt")))
}

/// The paths where a rebuilt output differs from the manifest of the result it is compared
/// with (missing on one side, or other content, mode or target), sorted. The rebuilt tree is
/// described exactly as the cache describes an output.
fn differing(reference: &OutputManifest, rebuilt: &Path) -> Result<Vec<String>, CacheError> {
    let rebuilt = OutputManifest::describe(rebuilt)?;
    let by_path = |m: &OutputManifest| -> BTreeMap<String, OutputEntry> {
        (m.entries().iter())
            .map(|e| (e.path.clone(), e.clone()))
            .collect()
    };
    let (a, b) = (by_path(reference), by_path(&rebuilt));
    let mut paths: Vec<String> = (a.iter())
        .filter(|(path, entry)| b.get(*path) != Some(*entry))
        .map(|(path, _)| path.clone())
        .chain(b.keys().filter(|path| !a.contains_key(*path)).cloned())
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp -a {} failed",
            from.display()
        )))
    }
}

/// diffoscope's text report on the two trees (its first lines), when it is installed.
fn diffoscope(cached: &Path, rebuilt: &Path) -> Option<String> {
    let out = std::process::Command::new("diffoscope")
        .args([
            "--text",
            "-",
            "--max-report-size",
            "200000",
            "--no-progress",
        ])
        .arg(cached)
        .arg(rebuilt)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    // 1: differences found; 0: none (the trees differ in what diffoscope ignores, such as
    // modes); anything else: diffoscope failed, which the caller's list still covers.
    match out.status.code() {
        Some(0 | 1) => {
            let text = String::from_utf8_lossy(&out.stdout);
            Some(text.lines().take(60).collect::<Vec<_>>().join("\n"))
        }
        _ => None,
    }
}
