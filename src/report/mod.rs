//! What a run tells the people and programs watching it. The engine, the recipes and the
//! remote cache send typed [`Event`]s to one [`Reporter`]; each view (plain lines for logs and
//! CI, the live terminal status, the JSON event stream, the Chrome trace) implements it, so a
//! new view never touches the engine.

pub mod board;
pub mod critical;
pub mod events;
pub mod expect;
pub mod plain;
pub mod terminal;
pub mod trace;
pub mod watch;

use std::path::Path;

use crate::key::ActionKey;
use crate::key::explain::Reason;
use crate::kind::ActionKind;

pub use expect::Expected;

/// How an action was decided when its dependencies were done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Its key is in the local cache.
    Cached,
    /// Its key is in the remote cache and its outputs stay there until something needs them.
    Remote,
    /// It needs a worker: to execute, or to fetch its outputs from the remote cache.
    Run,
}

/// How an action that had a worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Executed,
    /// Fetched from the remote cache instead of executed.
    Remote,
    Failed,
    /// It did not finish: a dependency's outputs have to be made again first (corrupt or
    /// gone from the remote); the run decides it again.
    Retried,
}

/// One thing that happened in a run. Borrowed, so that sending one costs no allocation.
#[derive(Debug)]
pub enum Event<'a> {
    /// A round of the engine starts: `actions` actions, `jobs` workers.
    RunStarted { actions: usize, jobs: usize },
    /// An action's dependencies are done and the engine decided what to do with it.
    Decided {
        action: &'a str,
        kind: ActionKind,
        decision: Decision,
        key: Option<ActionKey>,
        /// Why it is not in the local cache.
        reason: Option<&'a Reason>,
        /// How the last execution of this action went, when one is known.
        expected: Option<Expected>,
        done: usize,
        total: usize,
    },
    /// A worker took the action.
    Started {
        action: &'a str,
        kind: ActionKind,
        worker: usize,
        expected: Option<Expected>,
    },
    /// The action's log has grown to `lines` lines (sent at most every few seconds).
    Output { action: &'a str, lines: u64 },
    /// A worker is done with the action.
    Finished {
        action: &'a str,
        kind: ActionKind,
        outcome: Outcome,
        key: ActionKey,
        reason: &'a Reason,
        seconds: f64,
        /// The log, for an executed or failed action.
        log: Option<&'a Path>,
        error: Option<&'a str>,
        done: usize,
        total: usize,
    },
    /// The action will not run: a dependency failed or the run is stopping.
    Skipped { action: &'a str },
    /// The estimated seconds until the critical path of what is left ends.
    Estimate { seconds: f64 },
    /// A warning or notice for the user (remote cache trouble, a wait for a lock, a download's
    /// progress, a corrupt entry evicted).
    Message { text: &'a str },
    /// About once a second while actions run: views that show elapsed time redraw.
    Tick,
    /// The run is over (after every round).
    Summary(&'a Summary),
}

/// What a whole run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub actions: usize,
    pub cached: usize,
    pub executed: usize,
    pub remote: usize,
    pub failed: usize,
    pub skipped: usize,
    pub seconds: f64,
    pub interrupted: bool,
}

/// A view of a run. Called from the scheduler thread and from workers, so it must be `Sync`.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);

    /// Tells the user `text` through the view, so that it never tears a live status display.
    fn say(&self, text: &str) {
        self.event(&Event::Message { text });
    }
}

/// Shows nothing: plans, queries and `--progress none`.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event) {}
}

/// Several views at once: the terminal, and `--events` and `--profile` files.
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&self, event: &Event) {
        for view in &self.0 {
            view.event(event);
        }
    }
}

/// `1m05s`, `12.3s`: durations as people read them.
pub fn human(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// How far a running action is, against its last execution: `412 lines, 15% of 2740, about
/// 3m10s left`. Without a last execution, only what it has done so far.
pub fn progress_note(elapsed: f64, lines: u64, expected: Option<Expected>) -> String {
    let Some(last) = expected else {
        return format!("{lines} lines");
    };
    let share = if last.lines > 0 {
        // Never 100% while it runs: this run may write more than the last one.
        let pct = (lines as f64 / last.lines as f64 * 100.0).min(99.0);
        format!("{lines} lines, {pct:.0}% of {}", last.lines)
    } else {
        format!("{lines} lines")
    };
    let left = last.seconds - elapsed;
    if left > 0.0 {
        format!("{share}, about {} left", human(left))
    } else {
        format!("{share}, longer than last time ({})", human(last.seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(4.24), "4.2s");
        assert_eq!(human(65.0), "1m05s");
        assert_eq!(human(3725.0), "1h02m");
    }

    #[test]
    fn progress_is_measured_against_the_last_run() {
        let last = Some(Expected {
            seconds: 200.0,
            lines: 1000,
        });
        assert_eq!(
            progress_note(50.0, 250, last),
            "250 lines, 25% of 1000, about 2m30s left"
        );
        assert_eq!(
            progress_note(250.0, 1200, last),
            "1200 lines, 99% of 1000, longer than last time (3m20s)"
        );
        assert_eq!(progress_note(5.0, 7, None), "7 lines");
    }
}
