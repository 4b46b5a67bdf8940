//! A build, as a library call: the use case `kbuild run` and `kbuild push` share, whatever
//! parses their arguments and renders their results. Its steps, in order: lower the targets
//! into a graph (reusing the kept one), run the engine, check that what `out/` and a push read
//! is there in full (evicting and building again what is not), link `out/`, record the
//! fingerprint a later null build checks, and save the ledger of kbuild's own links.

use std::path::Path;
use std::sync::Arc;

use crate::cache::Cache;
use crate::engine::{Engine, Report, Status};
use crate::exec::{Cancel, Executor};
use crate::graph::Graph;
use crate::label::Label;
use crate::model::Model;
use crate::plan::Goal;
use crate::remote::Remote;
use crate::report::{Event, Reporter, Summary};
use crate::statcache::StatCache;

/// What to build, with what, and where to tell about it.
pub struct Request<'a> {
    pub root: &'a Path,
    pub model: &'a Model,
    /// Target patterns as the user wrote them (`//6.6.x:dbg-arm64`, `//...`).
    pub labels: &'a [String],
    /// Build the targets, or build and boot-test them.
    pub goal: Goal,
    pub cache: &'a Cache,
    pub exec: &'a dyn Executor,
    pub jobs: usize,
    pub keep_going: bool,
    /// Refuse to pin unpinned sources in kernel.lock (`--locked`, for CI).
    pub locked: bool,
    pub remote: Option<Arc<Remote>>,
    /// The remote-execution cluster misses may run on.
    pub offload: Option<Arc<crate::engine::offload::Offload>>,
    pub report: Arc<dyn Reporter>,
    pub cancel: Cancel,
    /// The executor's name when it was the manifest's default rather than chosen for this
    /// command: the fingerprint keeps it, so that a later null build asks the same one.
    pub default_executor: Option<String>,
    /// Link `out/` and record the fingerprint when the build succeeds (`run`; a push needs
    /// neither).
    pub link_out: bool,
}

/// What a build made.
pub struct Built {
    pub targets: Vec<Label>,
    pub graph: Graph,
    pub report: Report,
    /// Some action failed or did not run.
    pub failed: bool,
}

/// The targets `labels` names, lowered into their action graph; the graph kept from the last
/// lowering is reused for what did not change.
pub fn lower(
    cache_root: &Path,
    model: &Model,
    (labels, goal, stat): (&[String], Goal, &mut StatCache),
    report: &dyn Reporter,
) -> miette::Result<(Vec<Label>, Graph)> {
    let targets = crate::label::resolve(model, labels)?;
    let patch_dirs = crate::plan::read_patch_dirs(model, &targets)?;
    let warn = &mut |e: crate::fsutil::SaveError| report.say(&e.to_string());
    let patterns = goal.patterns(labels);
    let kept = (cache_root, patterns.as_slice());
    let (graph, _) = crate::lowered::lower(model, (&targets, &patch_dirs, goal), kept, stat, warn)?;
    Ok((targets, graph))
}

/// The number of actions the fingerprint of the last run shows to have nothing to do (with
/// out/ still as that run left it), or `None` when it cannot show it. `executor` gives the
/// executor the recorded run used, if it can still be had.
pub fn null_build(
    root: &Path,
    cache: &Cache,
    labels: &[String],
    executor: impl FnOnce(&crate::fingerprint::Record) -> miette::Result<Option<Box<dyn Executor>>>,
) -> miette::Result<Option<NullRun>> {
    let links_present =
        root.join("out/.kbuild-links").exists() && root.join("out/index.json").exists();
    if !links_present {
        return Ok(None);
    }
    let Some(record) = crate::fingerprint::load(root, cache, labels)? else {
        return Ok(None);
    };
    let Some(exec) = executor(&record)? else {
        return Ok(None);
    };
    let n = record.null_build(root, cache, exec.as_ref(), labels);
    if n.is_some() {
        cache.touch_state(root);
    }
    Ok(n.map(|actions| NullRun {
        actions,
        tests: record.tests(),
    }))
}

/// What a null build found unchanged: every action, and the boot tests among them.
pub struct NullRun {
    pub actions: usize,
    pub tests: usize,
}

impl Built {
    /// The process's exit code after this build: the signal's when it was cancelled (as a
    /// shell reports a death by signal), 1 when an action failed, else 0.
    pub fn exit_code(&self, cancel: &Cancel) -> i32 {
        if cancel.is_cancelled() {
            cancel.exit_code()
        } else {
            i32::from(self.failed)
        }
    }
}

impl Request<'_> {
    pub fn engine(&self) -> Engine<'_> {
        Engine {
            workspace: self.root,
            cache: self.cache,
            exec: self.exec,
            jobs: self.jobs,
            keep_going: self.keep_going,
            cancel: self.cancel.clone(),
            report: self.report.clone(),
            locked: self.locked,
            records: false,
            remote: self.remote.clone(),
            offload: self.offload.clone(),
        }
    }
}

/// Builds what `request` asks for. A key that cannot be computed is the error; failed actions
/// are in the result (`failed`), with their logs.
pub fn build(request: &Request) -> miette::Result<Built> {
    let mut stat = StatCache::open(request.cache.root())?;
    let (targets, graph) = lower(
        request.cache.root(),
        request.model,
        (request.labels, request.goal, &mut stat),
        &*request.report,
    )?;
    if let Err(e) = stat.save() {
        request.report.say(&e.to_string());
    }
    let engine = request.engine();
    let mut report = run_reported(&engine, &graph)?;
    let failed = broken(&report);
    if !report.errors.is_empty() {
        return Err(report.errors.swap_remove(0).into());
    }
    if request.link_out {
        record(request, &targets, &graph, &report, failed)?;
    }
    // What the run's links (and out/'s) left, for the next run's checks.
    if let Err(e) = request.cache.ledger().save() {
        request.report.say(&e.to_string());
    }
    Ok(Built {
        targets,
        graph,
        report,
        failed,
    })
}

/// After a run: `out/` and the fingerprint when it succeeded; when it failed, no fingerprint,
/// so the next run decides every action again.
fn record(
    request: &Request,
    targets: &[Label],
    graph: &Graph,
    report: &Report,
    failed: bool,
) -> miette::Result<()> {
    let (root, cache) = (request.root, request.cache);
    let patterns = request.goal.patterns(request.labels);
    if failed {
        crate::fingerprint::forget(root, cache, &patterns);
        return Ok(());
    }
    crate::outlinks::refresh(root, cache, graph, targets, &report.status)?;
    crate::outlinks::write_layout(&root.join("out"), cache, graph, &report.status)?;
    let deps = crate::fingerprint::Dependencies {
        patch_dirs: crate::plan::patch_dirs(request.model, targets),
        inputs: report.inputs.clone(),
        toolsets: report.toolsets.clone(),
        keys: report.status.iter().filter_map(Status::key).collect(),
        default_executor: request.default_executor.clone(),
        out: None,
        tests: (graph.ids())
            .filter(|&id| graph.action(id).kind() == crate::kind::ActionKind::Test)
            .count(),
    };
    if let Err(e) = crate::fingerprint::record(root, cache, request.exec, &patterns, &deps) {
        request.report.say(&e.to_string());
    }
    Ok(())
}

/// Whether some action of the report failed or did not run.
pub fn broken(report: &Report) -> bool {
    report
        .status
        .iter()
        .any(|s| matches!(s, Status::Failed { .. } | Status::Skipped))
}

/// Runs the graph; then what out/ or a push needs must be there in full, and what is not is
/// evicted and built again, until nothing is.
pub fn run_healing(engine: &Engine, graph: &Graph) -> miette::Result<Report> {
    let mut report = engine.run(graph)?;
    // Each round builds again what the one before evicted, so it ends when a round finds
    // nothing to evict; the bound only guards against a disk that damages every write.
    for _ in 0..graph.len() {
        if broken(&report) || !report.errors.is_empty() || engine.cancel.is_cancelled() {
            break;
        }
        if crate::engine::heal::outputs(engine.cache, graph, &report.status) == 0 {
            break;
        }
        report = engine.run(graph)?;
    }
    Ok(report)
}

/// [`run_healing`], then the summary told to the engine's reporter (the terminal view clears
/// its status area then).
pub fn run_reported(engine: &Engine, graph: &Graph) -> miette::Result<Report> {
    let report = run_healing(engine, graph);
    let summary = match &report {
        Ok(r) => summary(&r.status, r.seconds, engine.cancel.is_cancelled()),
        Err(_) => Summary::default(),
    };
    engine.report.event(&Event::Summary(&summary));
    report
}

/// What a whole run did, counted from its statuses.
pub fn summary(status: &[Status], seconds: f64, interrupted: bool) -> Summary {
    let count = |f: fn(&Status) -> bool| status.iter().filter(|s| f(s)).count();
    Summary {
        actions: status.len(),
        cached: count(|s| matches!(s, Status::Cached { .. })),
        executed: count(|s| matches!(s, Status::Executed { .. })),
        remote: count(|s| matches!(s, Status::Remote { .. })),
        failed: count(|s| matches!(s, Status::Failed { .. })),
        skipped: count(|s| {
            matches!(
                s,
                Status::Skipped | Status::Pending | Status::WillRun { .. }
            )
        }),
        seconds,
        interrupted,
    }
}
