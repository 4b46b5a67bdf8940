//! Rendering plans, runs and explanations as text (for people) and JSON (for tools).

use std::fmt::Write as _;

use serde_json::json;

use crate::cache::LastRun;
use crate::engine::Status;
use crate::exec::Identity;
use crate::graph::Graph;
use crate::key::KeyRecord;
use crate::label::all_targets;
use crate::model::Model;

pub fn list(model: &Model) -> String {
    let targets = all_targets(model);
    let mut out = String::new();
    for series in &model.series {
        let note = if series.deprecated {
            " (deprecated)"
        } else {
            ""
        };
        let _ = writeln!(out, "{} {}{note}", series.name, series.version);
        for t in targets.iter().filter(|t| t.series == series.name) {
            let _ = writeln!(out, "  {t}");
        }
    }
    out
}

/// One line per series whose source kernel.local.kdl replaces.
pub fn replacements(model: &Model) -> String {
    let mut out = String::new();
    for series in &model.series {
        if let Some(original) = &series.source.replaced {
            let _ = writeln!(
                out,
                "source of {} replaced by kernel.local.kdl: {original} → {}",
                series.name, series.source.urls[0]
            );
        }
    }
    out
}

fn state_word(status: &Status) -> &'static str {
    match status {
        Status::Cached { .. } => "cached",
        Status::WillRun { .. } | Status::Pending => "run",
        Status::Executed { .. } => "executed",
        Status::Remote { .. } => "remote",
        Status::Failed { .. } => "failed",
        Status::Skipped => "skipped",
    }
}

/// `placed` says where an action that will run goes, when a remote executor is given.
pub fn plan_text(graph: &Graph, status: &[Status], placed: &[Option<String>]) -> String {
    let mut out = String::new();
    let mut cached = 0;
    for id in graph.ids() {
        match &status[id.index()] {
            Status::WillRun { reason, .. } => {
                let place = placed.get(id.index()).cloned().flatten();
                let place = place.map(|p| format!("; {p}")).unwrap_or_default();
                let _ = writeln!(out, "run     {}  ({reason}{place})", graph.action(id).name);
            }
            Status::Remote { reason, .. } => {
                let _ = writeln!(
                    out,
                    "remote  {}  (in the remote cache; locally: {reason})",
                    graph.action(id).name
                );
            }
            Status::Cached { .. } => cached += 1,
            other => {
                let _ = writeln!(out, "{:<7} {}", state_word(other), graph.action(id).name);
            }
        }
    }
    let remote = status
        .iter()
        .filter(|s| matches!(s, Status::Remote { .. }))
        .count();
    let _ = write!(
        out,
        "{} actions: {} to run, {cached} cached",
        graph.len(),
        graph.len() - cached - remote
    );
    if remote > 0 {
        let _ = write!(out, ", {remote} in the remote cache");
    }
    out.push('\n');
    out
}

fn action_json(graph: &Graph, status: &[Status], id: crate::action::ActionId) -> serde_json::Value {
    let action = graph.action(id);
    let s = &status[id.index()];
    let reason = match s {
        Status::WillRun { reason, .. }
        | Status::Executed { reason, .. }
        | Status::Remote { reason, .. }
        | Status::Failed { reason, .. } => Some(reason.to_string()),
        _ => None,
    };
    json!({
        "id": id.0,
        "name": action.name,
        "kind": action.kind(),
        "labels": action.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        "key": s.key().map(|k| k.to_string()),
        "inputs": action.inputs,
        "deps": action.deps.iter().map(|d| d.id.0).collect::<Vec<_>>(),
        "state": state_word(s),
        "reason": reason,
    })
}

/// Every action with its whole key record (`null` while a dependency has yet to run).
pub fn plan_json(graph: &Graph, status: &[Status], records: &[Option<KeyRecord>]) -> String {
    let actions: Vec<_> = graph
        .ids()
        .map(|id| {
            let mut v = action_json(graph, status, id);
            v["record"] = json!(records.get(id.index()).and_then(Option::as_ref));
            v
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "actions": actions })).expect("json")
}

/// The targets with an action to run (not cached, not in the remote cache), in the order asked:
/// `{"target":["//6.1.x:amd64"]}`, what a CI build matrix is made of. A multi-arch index is
/// left out: a job of one target never makes it (it needs every arch), and the final job makes
/// it from the cached images in milliseconds.
pub fn matrix(graph: &Graph, status: &[Status], targets: &[crate::label::Label]) -> String {
    let mut busy = std::collections::HashSet::new();
    for id in graph.ids() {
        let waits = matches!(status[id.index()], Status::WillRun { .. } | Status::Pending);
        if waits && graph.action(id).kind() != crate::kind::ActionKind::Index {
            busy.extend(graph.action(id).labels.iter());
        }
    }
    let work: Vec<String> = targets
        .iter()
        .filter(|t| busy.contains(t))
        .map(|t| t.to_string())
        .collect();
    json!({ "target": work }).to_string()
}

/// Bytes moved from and to the remote cache in one run.
#[derive(Clone, Copy)]
pub struct Traffic {
    pub down: u64,
    pub up: u64,
}

impl Traffic {
    pub fn of(stats: &crate::remote::Stats) -> Traffic {
        use std::sync::atomic::Ordering::Relaxed;
        Traffic {
            down: stats.down.load(Relaxed),
            up: stats.up.load(Relaxed),
        }
    }
}

/// `1.2 GB`, `340 kB`: decimal units, as network figures are given.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

/// What `kbuild run` prints after the build: the failures with their logs, then the totals
/// (text on stderr, or the JSON report on stdout).
pub fn run(
    built: &crate::build::Built,
    remote: Option<&crate::remote::Remote>,
    format: super::Format,
) {
    let (graph, status, seconds) = (&built.graph, &built.report.status, built.report.seconds);
    eprint!("{}", failures(graph, status));
    let traffic = remote.map(|r| Traffic::of(&r.stats));
    match format {
        super::Format::Json => println!("{}", run_json(graph, status, seconds, traffic)),
        _ => eprint!("{}", run_text(graph, status, seconds, traffic)),
    }
}

pub fn run_json(
    graph: &Graph,
    status: &[Status],
    seconds: f64,
    traffic: Option<Traffic>,
) -> String {
    let t = crate::build::summary(status, 0.0, false);
    let actions: Vec<_> = graph
        .ids()
        .map(|id| {
            let mut v = action_json(graph, status, id);
            v["outcome"] = json!(state_word(&status[id.index()]));
            match &status[id.index()] {
                Status::Failed { error, log, .. } => {
                    v["error"] = json!(error);
                    v["log"] = json!(log);
                }
                Status::Executed { seconds, .. } => v["seconds"] = json!(seconds),
                _ => {}
            }
            v
        })
        .collect();
    let mut value = json!({
        "actions": actions,
        "totals": { "actions": graph.len(), "cached": t.cached, "executed": t.executed, "failed": t.failed, "skipped": t.skipped, "seconds": seconds },
    });
    if let Some(traffic) = traffic {
        value["totals"]["remote"] = json!(t.remote);
        value["totals"]["bytes_down"] = json!(traffic.down);
        value["totals"]["bytes_up"] = json!(traffic.up);
    }
    serde_json::to_string_pretty(&value).expect("json")
}

/// The last lines of a log, indented, for failure reports.
fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    | {l}\n"))
        .collect()
}

/// Every failure with its hint and the tail of its log.
pub fn failures(graph: &Graph, status: &[Status]) -> String {
    let mut out = String::new();
    for id in graph.ids() {
        if let Status::Failed {
            error, hint, log, ..
        } = &status[id.index()]
        {
            let _ = writeln!(out, "error: `{}` failed: {error}", graph.action(id).name);
            if let Some(hint) = hint {
                let _ = writeln!(out, "  hint: {hint}");
            }
            let _ = writeln!(
                out,
                "  log: {} (last lines):\n{}",
                log.display(),
                tail(log, 20)
            );
        }
    }
    out
}

/// The summary line; with a remote cache, how many actions came from it and the traffic:
/// `kbuild: 42 actions, 12 cached, 3 executed, 0 failed, 27 remote (1.2 GB down, 0.3 GB up)`.
pub fn run_text(
    graph: &Graph,
    status: &[Status],
    seconds: f64,
    traffic: Option<Traffic>,
) -> String {
    let mut out = String::new();
    let t = crate::build::summary(status, 0.0, false);
    let _ = write!(
        out,
        "kbuild: {} actions, {} cached, {} executed, {} failed",
        graph.len(),
        t.cached,
        t.executed,
        t.failed
    );
    if let Some(traffic) = traffic {
        let _ = write!(
            out,
            ", {} remote ({} down, {} up)",
            t.remote,
            bytes(traffic.down),
            bytes(traffic.up)
        );
    }
    if t.skipped > 0 {
        let _ = write!(out, ", {} not run", t.skipped);
    }
    let _ = writeln!(out, " in {seconds:.2}s");
    out
}

/// `origin` tells where a cached entry came from when another machine built it.
pub fn why_text(
    graph: &Graph,
    (status, placed): (&[Status], &[Option<String>]),
    last: &LastRun,
    origin: impl Fn(crate::key::ActionKey) -> Option<crate::cache::Origin>,
) -> String {
    let mut out = String::new();
    for id in graph.ids() {
        let name = &graph.action(id).name;
        let line = match &status[id.index()] {
            Status::WillRun { reason, .. } => match placed.get(id.index()).cloned().flatten() {
                Some(place) => format!("will run: {reason}; {place}"),
                None => format!("will run: {reason}"),
            },
            Status::Remote { reason, .. } => {
                format!("from the remote cache (not local: {reason})")
            }
            Status::Cached { key, .. } => match (origin(*key), last.actions.get(name)) {
                (Some(origin), _) => format!("up to date ({origin})"),
                (None, Some(e)) if e.key == *key && e.reason.is_some() => format!(
                    "up to date; last ran because {}",
                    e.reason.as_deref().unwrap_or("")
                ),
                _ => "up to date (from the cache)".to_string(),
            },
            other => state_word(other).to_string(),
        };
        let _ = writeln!(out, "{name}: {line}");
    }
    out
}

/// `why --key`: each action's key and the whole record it is hashed from, one field a line.
pub fn key_text(graph: &Graph, status: &[Status], records: &[Option<KeyRecord>]) -> String {
    let mut out = String::new();
    for id in graph.ids() {
        let action = graph.action(id);
        let _ = writeln!(out, "{}", action.name);
        let (Some(key), Some(Some(record))) = (status[id.index()].key(), records.get(id.index()))
        else {
            let _ = writeln!(out, "  key       unknown until its dependencies have run\n");
            continue;
        };
        let _ = writeln!(out, "  key       {key}");
        let _ = writeln!(out, "  schema    {}", record.schema);
        let _ = writeln!(
            out,
            "  recipe    {} version {}, code {}",
            record.kind,
            record.recipe.version,
            record.recipe.code.short()
        );
        let _ = writeln!(out, "  params    {}", record.params);
        for (var, value) in &record.env {
            let _ = writeln!(out, "  env       {var}={value}");
        }
        match &record.executor {
            Identity::Host { programs } => {
                let _ = writeln!(out, "  executor  host");
                for (program, state) in programs {
                    let _ = writeln!(out, "            {program:<40} {state}");
                }
            }
            other => {
                let _ = writeln!(out, "  executor  {other}");
            }
        }
        for (path, digest) in &record.inputs {
            let _ = writeln!(out, "  input     {path:<40} blake3 {}", digest.short());
        }
        let deps = crate::key::dep_names(action).into_iter().zip(&action.deps);
        for (name, dep) in deps {
            let digest = record.deps.get(&name).map_or(String::new(), |d| d.short());
            let from = &graph.action(dep.id).name;
            let _ = writeln!(out, "  dep       {name:<12} {digest}  ({from})");
        }
        out.push('\n');
    }
    out
}
