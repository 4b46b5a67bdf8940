//! `--profile FILE`: the run in Chrome's trace event format, for Perfetto or chrome://tracing.
//! Each worker is a track and each action it ran a slice carrying its key, outcome and reason;
//! cache decisions are instants on the scheduler's track and the critical path's estimate a
//! counter. Written when the run ends.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Decision, Event, Reporter};

pub struct Trace {
    path: PathBuf,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    /// Running actions: when and on which track they started.
    open: HashMap<String, (f64, usize)>,
    tracks: BTreeSet<usize>,
}

/// The scheduler's track; workers are 1, 2 …
const SCHEDULER: usize = 0;

impl Trace {
    pub fn new(path: PathBuf) -> Trace {
        Trace {
            path,
            started: Instant::now(),
            state: Mutex::default(),
        }
    }

    fn micros(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 1e6).round()
    }

    fn write(&self, st: &State) -> std::io::Result<()> {
        let mut events = vec![json!({
            "ph": "M", "name": "process_name", "pid": 1, "tid": SCHEDULER,
            "args": {"name": "kbuild run"},
        })];
        for track in std::iter::once(SCHEDULER).chain(st.tracks.iter().copied()) {
            let name = match track {
                SCHEDULER => "scheduler".to_string(),
                n => format!("worker {n}"),
            };
            events.push(json!({
                "ph": "M", "name": "thread_name", "pid": 1, "tid": track,
                "args": {"name": name},
            }));
        }
        events.extend(st.events.iter().cloned());
        let trace = json!({"traceEvents": events, "displayTimeUnit": "ms"});
        std::fs::write(&self.path, serde_json::to_vec(&trace)?)
    }
}

impl Reporter for Trace {
    fn event(&self, event: &Event) {
        let ts = self.micros();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Decided {
                action,
                kind,
                decision,
                key,
                reason,
                ..
            } if *decision != Decision::Run => st.events.push(json!({
                "ph": "i", "s": "t", "name": action, "cat": kind.as_str(), "ts": ts, "pid": 1,
                "tid": SCHEDULER,
                "args": {"decision": decision, "key": key.map(|k| k.to_string()),
                         "reason": reason.map(|r| r.to_string())},
            })),
            Event::Started { action, worker, .. } => {
                let track = worker + 1;
                st.tracks.insert(track);
                st.open.insert(action.to_string(), (ts, track));
            }
            Event::Finished {
                action,
                kind,
                outcome,
                key,
                reason,
                ..
            } => {
                let Some((start, track)) = st.open.remove(*action) else {
                    return;
                };
                st.events.push(json!({
                    "ph": "X", "name": action, "cat": kind.as_str(), "ts": start,
                    "dur": ts - start, "pid": 1, "tid": track,
                    "args": {"key": key.to_string(), "outcome": outcome,
                             "reason": reason.to_string()},
                }));
            }
            Event::Estimate { seconds } => st.events.push(json!({
                "ph": "C", "name": "critical path left (s)", "ts": ts, "pid": 1,
                "tid": SCHEDULER, "args": {"seconds": (seconds * 10.0).round() / 10.0},
            })),
            Event::Summary(_) => {
                if let Err(e) = self.write(&st) {
                    eprintln!(
                        "kbuild: warning: cannot write the trace {}: {e}",
                        self.path.display()
                    );
                }
            }
            _ => {}
        }
    }
}
