//! `kbuild verify [LABEL…] [--against remote]`: builds the targets, then rebuilds each of
//! their actions with the cache bypassed and compares (`crate::verify`).

use super::{Workspace, views};
use crate::verify::{Against, Finding};

pub(crate) fn command(
    ws: &Workspace,
    labels: &[String],
    (jobs, against): (Option<usize>, super::AgainstArg),
    views: &views::Views,
) -> miette::Result<i32> {
    let against = match against {
        super::AgainstArg::Local => Against::Local,
        super::AgainstArg::Remote => Against::Remote,
    };
    // Another -j than a build's default.
    let jobs = jobs.unwrap_or_else(|| super::num_jobs(None) + 1);
    let cache = super::open_cache(ws)?;
    if against == Against::Remote && ws.remote.settings(&ws.root)?.is_none() {
        miette::bail!(
            help = "pass --remote-cache URL (or set KBUILD_REMOTE_CACHE, or remote-cache in kernel.local.kdl)",
            "--against remote needs a remote cache"
        );
    }
    let what = (labels, crate::plan::Goal::Build);
    let settings = (super::num_jobs(None), false, false);
    super::build_then(
        ws,
        &cache,
        what,
        settings,
        (false, views),
        |request, built| verify_built(request, &built, (jobs, against), &cache),
    )
}

/// Rebuilds and compares, once the build succeeded; prints a line per action and the counts.
fn verify_built(
    request: &crate::build::Request,
    built: &crate::build::Built,
    (jobs, against): (usize, Against),
    cache: &crate::cache::Cache,
) -> miette::Result<i32> {
    super::render::run(built, request.remote.as_deref(), super::Format::Text);
    if built.failed {
        eprintln!("kbuild: the build did not finish; nothing was verified");
        return Ok(built.exit_code(&request.cancel).max(1));
    }
    // Mismatches of earlier runs go: what is kept is this run's.
    let keep = cache.dir("verify");
    let _ = std::fs::remove_dir_all(&keep);
    let findings = crate::verify::verify(request, built, (jobs, against, &keep))?;
    let mut counts = [0usize; 4];
    for (id, finding) in &findings {
        counts[print(&built.graph.action(*id).name, finding)] += 1;
    }
    let [same, differ, failed, unmatched] = counts;
    let against = match against {
        Against::Local => "the local cache",
        Against::Remote => "the remote cache",
    };
    eprintln!(
        "kbuild: verified {} actions against {against}: {same} reproduced, {differ} differ, {failed} failed to rebuild, {unmatched} not compared",
        findings.len()
    );
    Ok(if request.cancel.is_cancelled() {
        request.cancel.exit_code()
    } else {
        i32::from(differ + failed > 0)
    })
}

/// One action's line (and diffoscope's report); gives its place in the counts: same, differ,
/// failed, not compared.
fn print(name: &str, finding: &Finding) -> usize {
    match finding {
        Finding::Same { files } => {
            println!("same     {name} ({files} files)");
            0
        }
        Finding::Differs {
            paths,
            kept,
            diffoscope,
        } => {
            let shown: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
            let more = paths.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            println!("DIFFERS  {name}: {}{more}", shown.join(", "));
            println!("         both trees kept in {}", kept.display());
            for line in diffoscope.iter().flat_map(|r| r.lines()) {
                println!("         | {line}");
            }
            1
        }
        Finding::Failed(why) => {
            println!("FAILED   {name}: {why}");
            2
        }
        Finding::Unmatched(why) => {
            println!("-        {name}: {why}");
            3
        }
    }
}
