//! A guard per host command, so that killing kbuild (even with SIGKILL, which it cannot catch)
//! kills everything the command started. The kernel signals a child when its parent dies
//! (`PR_SET_PDEATHSIG`), but only that one process: make would die and leave its compilers and
//! shells running in the build directory. The guard is kbuild's own binary, started as
//! `kbuild __guard PGID` beside each command; when kbuild dies it gets SIGTERM and kills the
//! command's whole process group. When the command ends normally, kbuild ends its guard.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The hidden first argument that turns the binary into a guard.
pub const ARG: &str = "__guard";

/// Starts a guard over the process group `pgid`; `None` if it cannot (the command then has
/// only its own parent-death signal).
pub fn spawn(pgid: i32) -> Option<Child> {
    let exe = std::env::current_exe().ok()?;
    // Only the kbuild binary knows `__guard`; a test harness running the library would take it
    // for a test filter.
    if exe.file_name()? != "kbuild" {
        return None;
    }
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(exe);
    cmd.arg(ARG)
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Blocked across exec, so a death signal that comes early waits for `main`.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // kbuild is gone already: act now.
                libc::kill(-pgid, libc::SIGKILL);
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn().ok()
}

/// Ends a guard whose command finished.
pub fn dismiss(mut guard: Child) {
    // SIGKILL, not SIGTERM: SIGTERM is what tells the guard to kill the group.
    let _ = guard.kill();
    let _ = guard.wait();
}

/// The guard process: waits for SIGTERM (kbuild died), then kills the group.
pub fn main(args: &[String]) -> i32 {
    let Some(pgid) = args
        .first()
        .and_then(|a| a.parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return 2;
    };
    // SAFETY: signal-mask calls and kill(2) on integers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        while libc::sigwait(&set, &mut signal) != 0 || signal != libc::SIGTERM {}
        libc::kill(-pgid, libc::SIGKILL);
    }
    0
}
