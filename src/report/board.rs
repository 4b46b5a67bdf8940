//! What the human views share: the run's done/total and each running action's start, lines
//! and last execution, followed from the events; and the line a finished action prints.

use std::collections::HashMap;
use std::time::Instant;

use super::{Event, Expected, Outcome};

pub struct Board<T> {
    pub done: usize,
    pub total: usize,
    pub running: HashMap<String, Task<T>>,
}

/// One running action, with what the view keeps beside it (`view`).
pub struct Task<T> {
    pub started: Instant,
    pub lines: u64,
    pub expected: Option<Expected>,
    pub view: T,
}

impl<T> Board<T> {
    pub fn new() -> Board<T> {
        Board {
            done: 0,
            total: 0,
            running: HashMap::new(),
        }
    }

    /// Follows `event`; `start` makes the view's part of an action that starts. Returns the
    /// task of an action that finished.
    pub fn follow(&mut self, event: &Event, start: impl FnOnce() -> T) -> Option<Task<T>> {
        match event {
            Event::Decided { done, total, .. } => (self.done, self.total) = (*done, *total),
            Event::Started {
                action, expected, ..
            } => {
                let task = Task {
                    started: Instant::now(),
                    lines: 0,
                    expected: *expected,
                    view: start(),
                };
                self.running.insert(action.to_string(), task);
            }
            Event::Output { action, lines } => {
                if let Some(task) = self.running.get_mut(*action) {
                    task.lines = *lines;
                }
            }
            Event::Finished {
                action,
                done,
                total,
                ..
            } => {
                (self.done, self.total) = (*done, *total);
                return self.running.remove(*action);
            }
            _ => {}
        }
        None
    }
}

impl<T> Default for Board<T> {
    fn default() -> Board<T> {
        Board::new()
    }
}

/// `[8/14] executed compile //6.6.x:amd64 (6.1s)`: what stays on screen when an action ends.
pub fn finished_line(event: &Event) -> Option<String> {
    let Event::Finished {
        action,
        outcome,
        seconds,
        done,
        total,
        ..
    } = event
    else {
        return None;
    };
    let what = match outcome {
        Outcome::Executed => format!("executed {action} ({seconds:.1}s)"),
        Outcome::Remote => format!("remote {action}"),
        Outcome::Failed => format!("FAILED {action}"),
        Outcome::Retried => return None,
    };
    Some(format!("[{done}/{total}] {what}"))
}
