//! Cooperative cancellation: Ctrl-C, or a SIGTERM, SIGHUP or SIGQUIT (CI cancelling a job,
//! `timeout`, a closed terminal), sets a flag and stops every running child's process group.
//! kbuild then exits with 128 + the signal's number, as a shell reports a death by signal.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// How long a cancelled command's process group has between SIGTERM and SIGKILL. make waits
/// for its children when it is terminated, so a single child that ignores SIGTERM would
/// otherwise hold a Ctrl-C forever.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Clone, Default, Debug)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    /// The signal that cancelled the run, 0 for none (or a cancel from code).
    signal: Arc<AtomicI32>,
    groups: Arc<Mutex<HashSet<i32>>>,
}

/// The signals that stop a run as Ctrl-C does.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Marks the run cancelled and terminates every registered process group: SIGTERM first,
    /// so that make can delete its half-written targets, then, after [`GRACE`], SIGKILL for
    /// what is left.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGTERM);
        let me = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(GRACE);
            me.signal_all(libc::SIGKILL);
        });
    }

    fn signal_all(&self, signal: i32) {
        for &pgid in self.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            signal_group(pgid, signal);
        }
    }

    pub fn register(&self, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        // A child that started after cancel() ran must not outlive it, nor wait for the grace.
        if self.is_cancelled() {
            signal_group(pgid, libc::SIGKILL);
        }
    }

    pub fn unregister(&self, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }

    /// The exit code of a cancelled run: 128 + the signal (130 for Ctrl-C).
    pub fn exit_code(&self) -> i32 {
        match self.signal.load(Ordering::SeqCst) {
            0 => 128 + libc::SIGINT,
            signal => 128 + signal,
        }
    }

    /// Handles [`STOP_SIGNALS`] for this process from now on; later calls are ignored.
    pub fn install_handler(&self) {
        static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        if INSTALLED.set(()).is_err() {
            return;
        }
        let Ok(mut signals) = signal_hook::iterator::Signals::new(STOP_SIGNALS) else {
            return;
        };
        let me = self.clone();
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let _ = me
                    .signal
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                let name = match signal {
                    libc::SIGINT => "interrupted",
                    libc::SIGTERM => "terminated (SIGTERM)",
                    libc::SIGHUP => "hung up (SIGHUP)",
                    _ => "quit (SIGQUIT)",
                };
                eprintln!("\nkbuild: {name}, stopping running actions");
                me.cancel();
            }
        });
    }
}

/// Sends `signal` to every process of the group `pgid`; a group already gone is no error.
pub fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe { libc::kill(-pgid, signal) };
}
