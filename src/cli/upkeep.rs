//! `kbuild cache verify|du|gc`: looking after the cache.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{Workspace, lower, open_cache, render::bytes};
use crate::action::Recipe;
use crate::cache::{Cache, Policy};
use crate::key::ActionKey;

pub fn verify(ws: &Workspace) -> miette::Result<i32> {
    let cache = open_cache(ws)?;
    let report = cache
        .verify()
        .map_err(|e| miette::miette!("reading the cache: {e}"))?;
    for p in &report.problems {
        match &p.unrepaired {
            None => println!("removed: {} ({})", p.path.display(), p.what),
            Some(e) => println!("NOT removed: {} ({}): {e}", p.path.display(), p.what),
        }
    }
    if report.remote > 0 {
        // Content addressing checks the files; only a signature says whose result it is.
        eprintln!(
            "kbuild: {} entries were taken from a remote cache, {} of them signed by a trusted key \
             (`kbuild why` names each one's origin)",
            report.remote, report.signed
        );
    }
    eprintln!(
        "kbuild: {} blob(s), {} action cache entries, {} tree(s) and {} remembered sum(s) or \
         compressed piece(s) checked; {} problem(s), {}",
        report.blobs,
        report.entries,
        report.trees,
        report.memos,
        report.problems.len(),
        if report.repaired_all() {
            "all repaired: the next run rebuilds what was removed"
        } else {
            "some could not be removed"
        }
    );
    if report.repaired_all() {
        return Ok(0);
    }
    eprintln!(
        "kbuild: remove what is listed by hand, or the whole cache: rm -rf {}",
        cache.root().display()
    );
    Ok(1)
}

/// What the current manifest uses: the keys of its actions' last run in this workspace, and
/// its persistent build directories relative to the workspace's build root.
struct Current {
    keys: HashSet<ActionKey>,
    build_root: PathBuf,
    build_dirs: HashSet<String>,
}

fn current(ws: &Workspace, cache: &Cache) -> miette::Result<Current> {
    let (_, graph) = lower(ws, &[])?;
    let last = cache.load_state(&ws.root)?;
    let mut keys = HashSet::new();
    let mut build_dirs = HashSet::new();
    for id in graph.ids() {
        let action = graph.action(id);
        if let Some(entry) = last.actions.get(&action.name) {
            keys.insert(entry.key);
        }
        if let Recipe::Compile { dirs, .. } | Recipe::Install { dirs, .. } = &action.recipe {
            build_dirs.insert(dirs.obj.clone());
            build_dirs.insert(dirs.src.clone());
        }
    }
    Ok(Current {
        keys,
        build_root: crate::cache::build_root(cache, &ws.root),
        build_dirs,
    })
}

pub fn du(ws: &Workspace) -> miette::Result<i32> {
    let cache = open_cache(ws)?;
    let now = current(ws, &cache)?;
    let dirs: Vec<PathBuf> = now
        .build_dirs
        .iter()
        .map(|d| now.build_root.join(d))
        .collect();
    let usage = cache
        .usage(&now.keys, &dirs)
        .map_err(|e| miette::miette!("reading the cache: {e}"))?;
    println!("{:<18} {:>9} {:>10}", "", "files", "size");
    for area in &usage.areas {
        println!(
            "{:<18} {:>9} {:>10}",
            area.name,
            area.files,
            bytes(area.bytes)
        );
    }
    println!(
        "on disk: {} (a file hard-linked from trees and build directories counted once)",
        bytes(usage.total)
    );
    println!(
        "the current manifest's last run uses {} entries naming {} of blobs, and {} of build directories",
        usage.current_entries,
        bytes(usage.current_blob_bytes),
        bytes(usage.current_build_bytes)
    );
    Ok(0)
}

pub fn gc(
    ws: &Workspace,
    max_size: Option<&str>,
    older_than: Option<f64>,
    include_current: bool,
) -> miette::Result<i32> {
    let max_size = match max_size {
        None => None,
        Some(text) => Some(crate::cache::parse_size(text).ok_or_else(|| {
            miette::miette!(
                help = "write a size such as 20G, 500MB or 1.5GiB",
                "`{text}` is no size"
            )
        })?),
    };
    let older_than = match older_than {
        None => None,
        Some(days) if days >= 0.0 && days.is_finite() => {
            Some(Duration::from_secs_f64(days * 86_400.0))
        }
        Some(days) => miette::bail!(
            help = "pass a number of days, e.g. --older-than 30",
            "--older-than {days} is no number of days"
        ),
    };
    let cache = open_cache(ws)?;
    let now = current(ws, &cache)?;
    let policy = Policy {
        max_size,
        older_than,
        current: now.keys,
        build: Some((now.build_root, now.build_dirs)),
        include_current,
    };
    let out = cache
        .collect(&policy)
        .map_err(|e| miette::miette!("collecting the cache: {e}"))?;
    let when = SystemTime::now();
    for r in &out.removed {
        let ago = when.duration_since(r.last_used).unwrap_or_default();
        let what = match &r.name {
            Some(name) => name.clone(),
            None => format!("entry {}", r.key),
        };
        println!(
            "removed {what} ({}, last used {} ago)",
            bytes(r.bytes),
            crate::report::human(ago.as_secs_f64())
        );
    }
    for (dir, size) in &out.build_dirs {
        println!(
            "removed build directory {} ({})",
            dir.display(),
            bytes(*size)
        );
    }
    let held = match out.held {
        0 => String::new(),
        n => format!("; kept {n} entries a running build holds"),
    };
    eprintln!(
        "kbuild: removed {} entries and {} build directories, {} → {}{held}",
        out.removed.len(),
        out.build_dirs.len(),
        bytes(out.before),
        bytes(out.after)
    );
    if let Some(max) = max_size
        && out.after > max
    {
        eprintln!(
            "kbuild: the cache is still over {}: what is left is held by running builds or used by the current manifest (--include-current removes that too)",
            bytes(max)
        );
    }
    Ok(0)
}
