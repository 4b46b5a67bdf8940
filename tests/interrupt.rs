//! Ctrl-C stops running children and leaves no cache entry for what did not finish.

mod common;

use std::time::{Duration, Instant};

use common::{Ws, wait_until};

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("kbuild") {
                found.push(cmdline);
            }
        }
    }
    found
}

fn compile_log_started(ws: &Ws) -> bool {
    let logs = ws.cache.join("logs");
    let Ok(dirs) = std::fs::read_dir(&logs) else {
        return false;
    };
    dirs.flatten().any(|d| {
        std::fs::read_to_string(d.path().join("compile___6.6.x_dbg-amd64.log"))
            .is_ok_and(|t| t.contains("$ make"))
    })
}

/// A run of the dbg kernel whose compile hangs, stopped by `signal` once make runs.
fn stop_mid_compile(signal: i32) -> (Ws, std::process::ExitStatus, Instant) {
    let ws = Ws::new();
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_SLOW=y\n",
    );
    let mut child = ws
        .command(&["run", "//6.6.x:dbg-amd64"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    wait_until(
        started + Duration::from_secs(30),
        Duration::from_millis(50),
        || compile_log_started(&ws),
        || "compile never started".into(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hung make was not killed"
    );
    (ws, status, started)
}

/// Nothing of the workspace runs any more, and the unfinished actions have no cache entry.
fn nothing_left(ws: &Ws) {
    wait_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(50),
        || processes_mentioning(&ws.path().display().to_string()).is_empty(),
        || {
            format!(
                "children left behind: {:?}",
                processes_mentioning(&ws.path().display().to_string())
            )
        },
    );
    let plan = String::from_utf8(ws.kbuild(&["plan", "//6.6.x:dbg-amd64"]).stdout).unwrap();
    assert!(
        plan.contains("run     compile //6.6.x:dbg-amd64  ("),
        "{plan}"
    );
    assert!(plan.contains("run     tag //6.6.x:dbg-amd64"), "{plan}");
}

#[test]
fn ctrl_c_kills_children_and_caches_nothing_unfinished() {
    let (ws, status, _) = stop_mid_compile(libc::SIGINT);
    assert_eq!(status.code(), Some(130));
    nothing_left(&ws);
    let plan = String::from_utf8(ws.kbuild(&["plan", "//6.6.x:dbg-amd64"]).stdout).unwrap();
    let why = "(its inputs are unchanged but no cache entry exists";
    assert!(plan.contains(why), "{plan}");
}

#[test]
fn sigterm_sighup_and_sigquit_stop_a_run_like_ctrl_c() {
    for (signal, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
        (libc::SIGQUIT, 131),
    ] {
        let (ws, status, _) = stop_mid_compile(signal);
        assert_eq!(status.code(), Some(code), "signal {signal}");
        nothing_left(&ws);
    }
}

#[test]
fn kill_9_takes_the_whole_build_with_it() {
    let (ws, status, _) = stop_mid_compile(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // make and the shell and sleep under it: all gone, with nobody to tell them but the guard.
    nothing_left(&ws);
    // And the next run builds in the same directory, alone.
    ws.write("kernel/common/config-dbg", common::DBG_FRAGMENT);
    ws.run(&["//6.6.x:dbg-amd64"], 0);
}

#[test]
fn ctrl_c_also_kills_what_ignores_sigterm() {
    // A command whose child ignores SIGTERM (as the ignored disposition survives exec): make
    // dies of the SIGTERM, its child would not.
    let marker = "1234.5678";
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        "    binary \"perf\"\n",
        &format!(
            "    binary \"perf\"\n    args \"--eval=hang: ; sh -c 'trap \\\"\\\" TERM; sleep {marker}'\" \"hang\"\n"
        ),
    );
    let mut child = ws
        .command(&["run", "//6.6.x:perf-amd64"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(50),
        || !processes_mentioning(marker).is_empty(),
        || "the tool never started".into(),
    );
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            // Leave nothing behind on the way out of a failed test.
            let _ = child.kill();
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-f", marker])
                .status();
            panic!("kbuild still waits for its command 30 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    wait_until(
        stopped + Duration::from_secs(5),
        Duration::from_millis(50),
        || processes_mentioning(marker).is_empty(),
        || format!("left behind: {:?}", processes_mentioning(marker)),
    );
}
