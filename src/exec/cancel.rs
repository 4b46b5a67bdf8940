//! Cooperative cancellation: Ctrl-C sets a flag and kills every running child's process group.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How long a cancelled command's process group has between SIGTERM and SIGKILL. make waits
/// for its children when it is terminated, so a single child that ignores SIGTERM would
/// otherwise hold a Ctrl-C forever.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Clone, Default, Debug)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    groups: Arc<Mutex<HashSet<i32>>>,
}

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

    /// Installs the Ctrl-C handler for this process; later calls are ignored.
    pub fn install_handler(&self) {
        let me = self.clone();
        let _ = ctrlc::set_handler(move || {
            eprintln!("\nkbuild: interrupted, stopping running actions");
            me.cancel();
        });
    }
}

/// Sends `signal` to every process of the group `pgid`; a group already gone is no error.
pub fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe { libc::kill(-pgid, signal) };
}
