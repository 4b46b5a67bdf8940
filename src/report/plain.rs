//! Plain lines on stderr, for CI logs and pipes: a line when an action ends, and for a long
//! action a heartbeat at most every 30 seconds, so that a silent 16-minute compile still shows
//! that it lives and how far it is. No escape sequences, ever.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::board::{Board, finished_line};
use super::{Event, Reporter, human, progress_note};

pub struct Plain {
    heartbeat: Duration,
    /// Beside each running action: when its last heartbeat (or its start) was.
    board: Mutex<Board<Instant>>,
}

impl Plain {
    pub fn new() -> Plain {
        Plain::with_heartbeat(Duration::from_secs(30))
    }

    pub fn with_heartbeat(heartbeat: Duration) -> Plain {
        Plain {
            heartbeat,
            board: Mutex::default(),
        }
    }
}

impl Default for Plain {
    fn default() -> Plain {
        Plain::new()
    }
}

impl Reporter for Plain {
    fn event(&self, event: &Event) {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.follow(event, Instant::now);
        match event {
            Event::Finished { .. } => {
                if let Some(line) = finished_line(event) {
                    eprintln!("{line}");
                }
            }
            Event::Message { text } => eprintln!("{text}"),
            Event::Tick => {
                let (done, total) = (board.done, board.total);
                let mut beats: Vec<_> = board
                    .running
                    .iter_mut()
                    .filter(|(_, task)| task.view.elapsed() >= self.heartbeat)
                    .map(|(name, task)| {
                        task.view = Instant::now();
                        let elapsed = task.started.elapsed().as_secs_f64();
                        let note = progress_note(elapsed, task.lines, task.expected);
                        format!(
                            "[{done}/{total}] running {name}: {}, {note}",
                            human(elapsed)
                        )
                    })
                    .collect();
                beats.sort();
                for line in beats {
                    eprintln!("{line}");
                }
            }
            _ => {}
        }
    }
}
