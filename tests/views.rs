//! What a run shows while it runs: plain lines and heartbeats, the JSON event stream checked
//! against its schema, the Chrome trace, and (in tmux, a real terminal) the live status area.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Ws;

/// A workspace whose amd64 compile prints a line per object for 6 s (the fake's FAKE_PACE).
fn paced() -> Ws {
    let ws = Ws::new();
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_FAKE_PACE is not set",
        "CONFIG_FAKE_PACE=y",
    );
    ws
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is no JSON: {e}")))
        .collect()
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/events.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn events_are_json_lines_that_follow_the_schema() {
    let ws = Ws::new();
    let events = ws.path().join("events.jsonl");
    let report = ws.run(&["--events", events.to_str().unwrap(), "//6.6.x:amd64"], 0);
    let lines = lines_of(&events);
    let schema = schema();
    for line in &lines {
        let errors: Vec<String> = schema.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line} breaks the schema: {errors:?}");
    }
    assert_eq!(lines[0]["event"], "run_started");
    assert_eq!(lines[0]["schema"], 1);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["executed"], report.total("executed"));
    // Every action is decided once, and every executed one starts and finishes once.
    let of = |event: &str| -> Vec<String> {
        let mut names: Vec<String> = lines
            .iter()
            .filter(|l| l["event"] == event)
            .map(|l| l["action"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let mut all: Vec<String> = report.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    all.sort();
    assert_eq!(of("decided"), all);
    assert_eq!(of("started"), report.executed());
    assert_eq!(of("finished"), report.executed());
    let times: Vec<f64> = lines.iter().map(|l| l["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time runs forward");

    // The second run: everything cached, said so action by action.
    std::fs::remove_file(&events).unwrap();
    ws.run(&["--events", events.to_str().unwrap(), "//6.6.x:amd64"], 0);
    let lines = lines_of(&events);
    let cached = lines
        .iter()
        .filter(|l| l["event"] == "decided" && l["decision"] == "cached")
        .count();
    assert_eq!(cached, all.len());
    assert!(!lines.iter().any(|l| l["event"] == "started"));
}

#[test]
fn events_to_stdout_and_a_json_report_do_not_mix() {
    let ws = Ws::new();
    let out = ws.kbuild(&["run", "--format", "json", "--events", "-"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("would both write to stdout"), "{stderr}");

    // Alone on stdout, the events are all there is.
    let out = ws.kbuild(&["run", "--events", "-", "//6.6.x:amd64"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().count() > 10);
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn a_failure_is_an_event_with_its_error_and_log() {
    let ws = Ws::new();
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_FAIL=y\n",
    );
    let events = ws.path().join("events.jsonl");
    ws.run(
        &["--events", events.to_str().unwrap(), "//6.6.x:dbg-amd64"],
        1,
    );
    let lines = lines_of(&events);
    let failed = lines
        .iter()
        .find(|l| l["event"] == "finished" && l["outcome"] == "failed")
        .expect("a failed action");
    assert_eq!(failed["kind"], "compile");
    assert!(
        failed["error"].as_str().unwrap().contains("make"),
        "{failed}"
    );
    let log = failed["log"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("CONFIG_FAKE_FAIL is set")
    );
    assert!(lines.iter().any(|l| l["event"] == "skipped"));
    assert_eq!(lines.last().unwrap()["failed"], 1);
}

#[test]
fn profile_is_a_trace_with_one_slice_per_executed_action() {
    let ws = Ws::new();
    let trace = ws.path().join("trace.json");
    let report = ws.run(&["--profile", trace.to_str().unwrap(), "//6.6.x:amd64"], 0);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let mut slices: Vec<String> = events
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            assert!(e["dur"].as_f64().unwrap() >= 0.0);
            assert!(
                e["tid"].as_u64().unwrap() >= 1,
                "slices are on worker tracks"
            );
            assert_eq!(e["args"]["outcome"], "executed");
            assert_eq!(e["args"]["key"].as_str().unwrap().len(), 64);
            e["name"].as_str().unwrap().to_string()
        })
        .collect();
    slices.sort();
    assert_eq!(slices, report.executed());
    // Each worker track is named.
    let named = |tid: u64| {
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] == tid)
    };
    assert!(named(0) && named(1));
}

#[test]
fn plain_output_has_heartbeats_with_progress_against_the_last_run_and_no_escapes() {
    let ws = paced();
    let run = || {
        let out = ws
            .command(&["run", "//6.6.x:amd64"])
            .env("KBUILD_HEARTBEAT", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let first = run();
    assert!(
        !first.contains('\x1b'),
        "escape sequence in plain output:\n{first}"
    );
    assert!(
        first.contains("running compile //6.6.x:amd64: "),
        "no heartbeat:\n{first}"
    );
    assert!(first.contains("] executed compile //6.6.x:amd64 ("));
    ws.set_amd64_cpus(32);
    let second = run();
    let beat = second
        .lines()
        .find(|l| l.contains("running compile //6.6.x:amd64: "))
        .unwrap_or_else(|| panic!("no heartbeat:\n{second}"));
    // Measured against the first run's compile, which printed 24 objects.
    assert!(beat.contains("% of "), "{beat}");
    assert!(
        beat.contains(" left") || beat.contains("longer than last time"),
        "{beat}"
    );
}

#[test]
fn the_log_ends_with_what_the_next_run_measures_itself_against() {
    let ws = paced();
    ws.run(&["//6.6.x:amd64"], 0);
    let log = ws.kbuild(&["log", "//6.6.x:amd64"]);
    let text = String::from_utf8(log.stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("# kbuild: done in "), "{last}");
    let lines = text.lines().count() as u64 - 1;
    assert!(last.ends_with(&format!(", {lines} lines")), "{last}");
    assert!(text.contains("  CC      drivers/fake24.o"));
}

/// Waits until the pane's text satisfies `done`, and returns it.
fn pane_until(session: &str, deadline: Duration, done: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + deadline;
    loop {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < until, "the pane never got there:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
#[ignore = "slow: two paced compiles in a tmux terminal (tmux from .ci/setup)"]
fn terminal_view_shows_running_actions_and_leaves_only_the_summary() {
    let ws = paced();
    // The first run gives the second one something to measure against.
    ws.run(&["//6.6.x:amd64"], 0);
    ws.set_amd64_cpus(16);
    let session = format!("kbuild-views-{}", std::process::id());
    let _tmux = Tmux(session.clone());
    let script = ws.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "unset NO_COLOR\nexport KBUILD_CACHE='{}'\n'{}' -C '{}' run //6.6.x:amd64\necho \"exit=$?\"\nsleep 600\n",
            ws.cache.display(),
            env!("CARGO_BIN_EXE_kbuild"),
            ws.path().display()
        ),
    )
    .unwrap();
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-x", "160", "-y", "40", "-s", &session])
        .arg(format!("TERM=xterm-256color bash '{}'", script.display()))
        .status()
        .unwrap();
    assert!(status.success(), "tmux cannot start");
    let running = pane_until(&session, Duration::from_secs(60), |t| {
        t.contains("compile //6.6.x:amd64  ") && t.contains("% of ")
    });
    let line = running
        .lines()
        .find(|l| l.contains("compile //6.6.x:amd64  "))
        .unwrap();
    // Elapsed time, lines so far against the last run's count.
    assert!(line.contains("s  "), "{line}");
    assert!(line.contains(" lines, "), "{line}");
    assert!(
        running.contains(" running"),
        "the status header:\n{running}"
    );
    let done = pane_until(&session, Duration::from_secs(60), |t| t.contains("exit="));
    assert!(done.contains("exit=0"), "{done}");
    assert!(done.contains(" actions, "), "no summary:\n{done}");
    assert!(
        done.contains("] executed compile //6.6.x:amd64 ("),
        "finished actions stay above:\n{done}"
    );
    assert!(
        !done.contains(" running") && !done.contains("% of "),
        "status lines left behind:\n{done}"
    );
}
