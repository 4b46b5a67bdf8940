//! Watches the logs of running actions: how many lines each has written, sent as
//! [`Event::Output`], and a [`Event::Tick`] about once a second so that views can redraw.
//! One thread, started when the first action runs; a null build never starts it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Event, Reporter, expect};

const TICK: Duration = Duration::from_secs(1);
/// Line counts go out at most this often per action: an event stream of a compile stays short.
const OUTPUT_EVERY: Duration = Duration::from_secs(2);

struct Running {
    action: String,
    log: PathBuf,
    offset: u64,
    lines: u64,
    sent: u64,
    sent_at: Instant,
}

#[derive(Default)]
struct Shared {
    running: Mutex<Vec<Running>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

pub struct Watch {
    reporter: Arc<dyn Reporter>,
    shared: Arc<Shared>,
    thread: OnceLock<JoinHandle<()>>,
}

impl Watch {
    pub fn new(reporter: Arc<dyn Reporter>) -> Watch {
        Watch {
            reporter,
            shared: Arc::default(),
            thread: OnceLock::new(),
        }
    }

    /// `action` started writing its log at `log`.
    pub fn begin(&self, action: &str, log: &Path) {
        self.lock().push(Running {
            action: action.to_string(),
            log: log.to_path_buf(),
            offset: 0,
            lines: 0,
            sent: 0,
            sent_at: Instant::now(),
        });
        self.thread.get_or_init(|| {
            let (shared, reporter) = (self.shared.clone(), self.reporter.clone());
            std::thread::spawn(move || watch(&shared, reporter.as_ref()))
        });
    }

    /// `action` is done with its log.
    pub fn end(&self, action: &str) {
        self.lock().retain(|r| r.action != action);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(shared: &Shared, reporter: &dyn Reporter) {
    loop {
        let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
        let (stop, _) = shared
            .wake
            .wait_timeout_while(stop, TICK, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        if *stop {
            return;
        }
        drop(stop);
        let grown = {
            let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
            running.iter_mut().filter_map(grown).collect::<Vec<_>>()
        };
        for (action, lines) in &grown {
            reporter.event(&Event::Output {
                action,
                lines: *lines,
            });
        }
        reporter.event(&Event::Tick);
    }
}

/// Reads what `r`'s log gained since last time; its new line count when it is due to go out.
fn grown(r: &mut Running) -> Option<(String, u64)> {
    if let Ok(mut file) = std::fs::File::open(&r.log)
        && file.seek(SeekFrom::Start(r.offset)).is_ok()
    {
        let mut new = Vec::new();
        if file.read_to_end(&mut new).is_ok() {
            r.offset += new.len() as u64;
            r.lines = expect::bytecount(&new, r.lines);
        }
    }
    if r.lines == r.sent || r.sent_at.elapsed() < OUTPUT_EVERY {
        return None;
    }
    r.sent = r.lines;
    r.sent_at = Instant::now();
    Some((r.action.clone(), r.lines))
}
