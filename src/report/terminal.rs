//! The live view on a terminal: a status area with the run's progress and the critical path's
//! estimated end, and below it each running action with its elapsed time and, against its last
//! execution, its progress and time left. Finished actions, warnings and failures print above
//! the status area, which is gone when the run ends.

use std::sync::Mutex;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::board::{Board, finished_line};
use super::{Event, Reporter, human, progress_note};

pub struct Terminal {
    multi: MultiProgress,
    style: ProgressStyle,
    state: Mutex<State>,
}

struct State {
    header: ProgressBar,
    /// Beside each running action: its line in the status area.
    board: Board<ProgressBar>,
    /// The critical path's estimate and when it came: it shrinks as time passes.
    estimate: Option<(f64, Instant)>,
}

impl Terminal {
    /// `color`: false when `NO_COLOR` is set.
    pub fn new(color: bool) -> Terminal {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let template = if color {
            "{spinner:.cyan} {wide_msg}"
        } else {
            "{spinner} {wide_msg}"
        };
        let style = ProgressStyle::with_template(template).expect("a valid template");
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
        Terminal {
            multi,
            style,
            state: Mutex::new(State {
                header,
                board: Board::new(),
                estimate: None,
            }),
        }
    }

    fn redraw(st: &State) {
        let left = st
            .estimate
            .map_or(0.0, |(s, at)| s - at.elapsed().as_secs_f64());
        let estimate = if left > 0.0 {
            format!(", critical path about {} left", human(left))
        } else {
            String::new()
        };
        let board = &st.board;
        st.header.set_message(format!(
            "[{}/{}] {} running{estimate}",
            board.done,
            board.total,
            board.running.len()
        ));
        for (name, task) in &board.running {
            let elapsed = task.started.elapsed().as_secs_f64();
            let note = progress_note(elapsed, task.lines, task.expected);
            task.view
                .set_message(format!("{name}  {}  {note}", human(elapsed)));
        }
    }
}

impl Reporter for Terminal {
    fn event(&self, event: &Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = || {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(self.style.clone());
            bar
        };
        if let Some(done) = st.board.follow(event, start) {
            done.view.finish_and_clear();
            self.multi.remove(&done.view);
        }
        match event {
            Event::Finished { .. } => {
                if let Some(line) = finished_line(event) {
                    let _ = self.multi.println(line);
                }
            }
            Event::Message { text } => {
                let _ = self.multi.println(*text);
            }
            Event::Estimate { seconds } => st.estimate = Some((*seconds, Instant::now())),
            Event::Tick => {
                for task in st.board.running.values() {
                    task.view.tick();
                }
            }
            Event::Summary(_) => {
                for (_, task) in st.board.running.drain() {
                    task.view.finish_and_clear();
                }
                st.header.finish_and_clear();
                let _ = self.multi.clear();
                return;
            }
            _ => {}
        }
        Terminal::redraw(&st);
    }
}
