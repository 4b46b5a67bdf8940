//! Remote-execution overhead on the fake matrix: the test workspace (6.6.x, amd64 and arm64,
//! plain and dbg, perf) built in the builder image with every action the cluster can run
//! executed by two `kbuild worker`s on BuildGrid 0.9.1 + PostgreSQL 15, against the same build
//! run here with `-j2`, in the same run, on the same machine. Each round is a fresh workspace
//! and cache on each side, and a fresh server on the remote one (its CAS and action cache are
//! new; the workers keep their blob stores, as long-lived workers do). Rounds alternate which
//! side goes first. Printed: each round's wall seconds, the medians and their ratio (goal of
//! issue 33: at most 1.25x).
//!
//! Run: `cargo bench --bench remote_matrix` (BuildGrid, PostgreSQL, dockerd and the builder
//! image: `KBUILD_SETUP_REAL=1 bash .ci/setup`). KBUILD_BENCH_RUNS: rounds (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command};
use std::time::Instant;

use common::Ws;
use common::servers::Server;

const IMAGE: &str = "kbuild/builder:bookworm";

/// A fresh cluster: PostgreSQL, BuildGrid, and two docker workers of two leases each.
struct Cluster {
    workers: Vec<Child>,
    server: Server,
    _postgres: Server,
}

impl Cluster {
    fn start(scratch: &std::path::Path) -> Cluster {
        let postgres = Server::postgres();
        let server = Server::buildgrid_execution(&postgres);
        let workers = (0..2)
            .map(|n| {
                let log = std::fs::File::create(scratch.join(format!("worker-{n}.log"))).unwrap();
                Command::new(env!("CARGO_BIN_EXE_kbuild"))
                    .args(["worker", "--server", &server.url, "--executor", "docker"])
                    .args(["--image", IMAGE, "--jobs", "2", "--dir"])
                    .arg(scratch.join(format!("worker-{n}")))
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        Cluster {
            workers,
            server,
            _postgres: postgres,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// The fake workspace, its actions run in the builder image.
fn workspace() -> Ws {
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        "    builder \"linuxkit/alpine:1111111111111111111111111111111111111111\"",
        &format!("    builder \"{IMAGE}\"\n    executor \"docker\""),
    );
    ws
}

/// `kbuild run -j2` of the whole matrix; its wall seconds and the log line of each action that
/// ran remotely (where its time went).
fn build(ws: &Ws, extra: &[&str]) -> (f64, Vec<String>) {
    let started = Instant::now();
    let out = ws
        .command(&[&["run", "-j2"][..], extra].concat())
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let remote = std::fs::read_dir(ws.cache.join("logs/keys"))
        .map(|logs| {
            logs.flatten()
                .filter_map(|f| {
                    let log = std::fs::read_to_string(f.path()).ok()?;
                    let line = log.lines().find(|l| l.contains("ran remotely on"))?;
                    Some(line.trim_start_matches("kbuild: ").to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    (took, remote)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let runs: usize = std::env::var("KBUILD_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let scratch = tempfile::tempdir().unwrap();
    // One build of each kind first: the builder image's layers and the workers' blob stores
    // warm, as on a machine and cluster in use.
    {
        let cluster = Cluster::start(scratch.path());
        let url = cluster.server.url.clone();
        build(&workspace(), &[]);
        build(
            &workspace(),
            &["--remote-executor", &url, "--remote-exec", "always"],
        );
    }
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let cluster = Cluster::start(scratch.path());
        let url = cluster.server.url.clone();
        let flags = ["--remote-executor", url.as_str(), "--remote-exec", "always"];
        let (here, there) = (workspace(), workspace());
        let (l, (r, offloaded)) = if round % 2 == 0 {
            let l = build(&here, &[]).0;
            (l, build(&there, &flags))
        } else {
            let r = build(&there, &flags);
            (build(&here, &[]).0, r)
        };
        assert!(!offloaded.is_empty(), "nothing ran remotely");
        println!(
            "round {round}: local -j2 {l:.2} s, 2 workers {r:.2} s ({} actions remote)",
            offloaded.len()
        );
        for line in offloaded {
            println!("  {line}");
        }
        local.push(l);
        remote.push(r);
    }
    let (l, r) = (median(local), median(remote));
    println!(
        "fake matrix: local -j2 median {l:.2} s, 2 remote workers median {r:.2} s: {:.2}x \
         (goal: at most 1.25x)",
        r / l
    );
}
