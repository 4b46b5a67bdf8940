//! Cache upkeep: `kbuild cache du` and `kbuild cache gc`, with a concurrent run that gc must
//! leave alone.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Ws;

struct Gc {
    /// `(name, bytes, stdout line)` per removed entry, in the order gc removed them.
    removed: Vec<String>,
    build_dirs: Vec<String>,
    stderr: String,
}

fn gc(ws: &Ws, args: &[&str]) -> Gc {
    let mut all = vec!["cache", "gc"];
    all.extend(args);
    let out = ws.kbuild(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut removed = Vec::new();
    let mut build_dirs = Vec::new();
    for line in stdout.lines() {
        if let Some(dir) = line.strip_prefix("removed build directory ") {
            build_dirs.push(dir.split(" (").next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("removed ") {
            let name = rest.rsplit_once(" (").unwrap().0;
            removed.push(name.to_string());
        }
    }
    Gc {
        removed,
        build_dirs,
        stderr,
    }
}

/// The "on disk" figure of `kbuild cache du`, in bytes as printed (kB precision is enough).
fn on_disk(ws: &Ws) -> u64 {
    let out = ws.kbuild(&["cache", "du"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("on disk: ")).unwrap();
    let figure = line["on disk: ".len()..].split(" (").next().unwrap();
    let (number, unit) = figure.split_once(' ').unwrap();
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => panic!("unit {unit}"),
    };
    (number.parse::<f64>().unwrap() * scale) as u64
}

#[test]
fn du_shows_each_kind_and_what_the_manifest_uses() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let out = ws.kbuild(&["cache", "du"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in [
        "blobs",
        "action entries",
        "key records",
        "trees",
        "build directories",
        "logs",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind}:\n{text}"));
        let files: u64 = line[kind.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(files > 0, "{line}");
    }
    let report = ws.run(&["//6.6.x:amd64"], 0);
    let actions = report.json["actions"].as_array().unwrap().len();
    assert!(
        text.contains(&format!("last run uses {actions} entries")),
        "{text}"
    );
}

#[test]
fn gc_removes_the_oldest_first_and_a_run_rebuilds_exactly_what_went() {
    let ws = Ws::new();
    let first = ws.run(&["//6.6.x:amd64"], 0);
    ws.set_amd64_cpus(32);
    let second = ws.run(&["//6.6.x:amd64"], 0);
    // What the first run made and the second replaced is the oldest, and no longer current.
    let replaced: BTreeSet<String> = second.executed().into_iter().collect();
    let gone = gc(&ws, &["--max-size", "0"]);
    let removed: BTreeSet<String> = gone.removed.iter().cloned().collect();
    assert_eq!(
        removed, replaced,
        "only the replaced entries go: {}",
        gone.stderr
    );
    assert!(gone.stderr.contains("still over"), "{}", gone.stderr);
    assert!(gone.build_dirs.is_empty(), "current build directories stay");
    let again = ws.run(&["//6.6.x:amd64"], 0);
    assert!(again.executed().is_empty(), "{:?}", again.executed());
    assert_eq!(first.executed().len(), again.total("cached") as usize);

    // With the current entries allowed to go, a bound removes some of them; the next run
    // executes exactly those.
    let size = on_disk(&ws);
    let gone = gc(
        &ws,
        &["--max-size", &(size / 2).to_string(), "--include-current"],
    );
    assert!(!gone.removed.is_empty());
    assert!(on_disk(&ws) <= size / 2 + 2_000, "the bound holds");
    let removed: BTreeSet<String> = gone.removed.iter().cloned().collect();
    let rebuilt = ws.run(&["//6.6.x:amd64"], 0);
    let rebuilt: BTreeSet<String> = rebuilt.executed().into_iter().collect();
    assert_eq!(rebuilt, removed);
}

#[test]
fn gc_by_age_keeps_what_is_recent() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    ws.set_amd64_cpus(32);
    let second = ws.run(&["//6.6.x:amd64"], 0);
    assert!(gc(&ws, &["--older-than", "1"]).removed.is_empty());
    let gone = gc(&ws, &["--older-than", "0"]);
    let removed: BTreeSet<String> = gone.removed.into_iter().collect();
    assert_eq!(removed, second.executed().into_iter().collect());
}

#[test]
fn gc_removes_build_directories_of_targets_gone_from_the_manifest() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64", "//6.6.x:arm64"], 0);
    ws.edit(
        "kernel.kdl",
        "arches \"x86_64\" \"aarch64\"",
        "arches \"x86_64\"",
    );
    let gone = gc(&ws, &[]);
    assert_eq!(gone.build_dirs.len(), 1, "{:?}", gone.build_dirs);
    assert!(gone.build_dirs[0].ends_with("/6.6.x/arm64"));
    assert!(gone.removed.is_empty(), "no bound, no entry removed");
    // amd64's stays: its kernel is not built again (only the image, its tag and the index,
    // which lost a platform).
    let again = ws.run(&["//6.6.x:amd64"], 0);
    let kernel = ["configure ", "compile ", "install "];
    assert!(
        !again
            .executed()
            .iter()
            .any(|n| kernel.iter().any(|k| n.starts_with(k))),
        "{:?}",
        again.executed()
    );
}

#[test]
fn gc_never_removes_what_a_running_build_holds() {
    let ws = Ws::new();
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_SLOW=y\n",
    );
    let events = ws.path().join("events.jsonl");
    let mut run = ws
        .command(&[
            "run",
            "//6.6.x:dbg-amd64",
            "--progress",
            "none",
            "--events",
            events.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let compiling = || {
        std::fs::read_to_string(&events).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("\"started\"") && l.contains("compile //6.6.x:dbg-amd64"))
        })
    };
    common::wait_until(
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(50),
        compiling,
        || "the compile never started".into(),
    );
    // Everything the run has made so far is held: fetch, patch, configure, check …
    let made = || -> BTreeSet<String> {
        std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "finished" && e["outcome"] == "executed")
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    };
    let before = made();
    assert!(before.len() >= 3, "{before:?}");
    let gone = gc(&ws, &["--max-size", "0", "--include-current"]);
    assert!(gone.removed.is_empty(), "{:?}", gone.removed);
    // What else finished meanwhile (headers, on the other worker) is held as well.
    let kept: usize = gone
        .stderr
        .split("; kept ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no kept entries: {}", gone.stderr));
    assert!(kept >= before.len(), "{}", gone.stderr);
    // Its build directory is locked by the compile: it stays too.
    assert!(gone.build_dirs.is_empty(), "{:?}", gone.build_dirs);
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    run.wait().unwrap();
    // The run is over: what it held may go now.
    let gone = gc(&ws, &["--max-size", "0", "--include-current"]);
    let removed: BTreeSet<String> = gone.removed.into_iter().collect();
    assert_eq!(removed, made());
}
