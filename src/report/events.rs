//! `--events FILE`: one JSON object per line as things happen, for CI dashboards and editors.
//! The schema is versioned and documented in doc/events.md (doc/events.schema.json checks it).

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Event, Reporter};

/// The schema version, in every `run_started` line. A change that removes or renames a field
/// bumps it; new fields and events do not.
pub const SCHEMA: u32 = 1;

pub struct Events {
    out: Mutex<Box<dyn Write + Send>>,
    started: Instant,
}

impl Events {
    /// Writes to `path`, or to stdout for `-`.
    pub fn create(path: &std::path::Path) -> std::io::Result<Events> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::File::create(path)?)
        };
        Ok(Events {
            out: Mutex::new(out),
            started: Instant::now(),
        })
    }
}

impl Reporter for Events {
    fn event(&self, event: &Event) {
        let Some(mut line) = to_json(event) else {
            return;
        };
        line["t"] = json!(round_ms(self.started.elapsed().as_secs_f64()));
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line, flushed: a reader following the file sees whole lines at once.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The line of one event; ticks are not written.
fn to_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::RunStarted { actions, jobs } => {
            json!({"event": "run_started", "schema": SCHEMA, "actions": actions, "jobs": jobs})
        }
        Event::Decided {
            action,
            kind,
            decision,
            key,
            reason,
            expected,
            done,
            total,
        } => json!({
            "event": "decided", "action": action, "kind": kind.as_str(), "decision": decision,
            "key": key.map(|k| k.to_string()), "reason": reason.map(|r| r.to_string()),
            "expected": expected, "done": done, "total": total,
        }),
        Event::Started {
            action,
            kind,
            worker,
            expected,
        } => json!({
            "event": "started", "action": action, "kind": kind.as_str(), "worker": worker,
            "expected": expected,
        }),
        Event::Output { action, lines } => {
            json!({"event": "output", "action": action, "lines": lines})
        }
        Event::Finished {
            action,
            kind,
            outcome,
            key,
            reason,
            seconds,
            log,
            error,
            done,
            total,
        } => json!({
            "event": "finished", "action": action, "kind": kind.as_str(), "outcome": outcome,
            "key": key.to_string(), "reason": reason.to_string(), "seconds": round_ms(*seconds),
            "log": log.map(|l| l.display().to_string()), "error": error,
            "done": done, "total": total,
        }),
        Event::Skipped { action } => json!({"event": "skipped", "action": action}),
        Event::Estimate { seconds } => {
            json!({"event": "estimate", "seconds": round_ms(*seconds)})
        }
        Event::Message { text } => json!({"event": "message", "text": text}),
        Event::Summary(summary) => {
            let mut line = json!(summary);
            line["event"] = json!("summary");
            line["seconds"] = json!(round_ms(summary.seconds));
            line
        }
        Event::Tick => return None,
    })
}
