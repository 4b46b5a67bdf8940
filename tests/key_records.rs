//! The key records of a fixed fake workspace, as a snapshot: any change to what enters a key
//! (a field, a parameter, the environment, a recipe's version or code) shows in review as a diff
//! of tests/snapshots/key_records__*.snap, and `cargo insta review` accepts it.
//!
//! What differs between machines is left out: the content of each host program (its name
//! stays) and the output digests of dependencies (their key names stay), which depend on the
//! compiler that built them.

mod common;

use std::fmt::Write as _;

use common::Ws;

fn records(ws: &Ws, label: &str) -> String {
    let out = ws.kbuild(&["plan", "--format", "json", label]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut text = String::new();
    for action in plan["actions"].as_array().unwrap() {
        let record = &action["record"];
        assert!(record.is_object(), "{} has no record", action["name"]);
        let _ = writeln!(text, "{}", action["name"].as_str().unwrap());
        let _ = writeln!(
            text,
            "  schema {} kind {} recipe version {} code {}",
            record["schema"], record["kind"], record["recipe"]["version"], record["recipe"]["code"]
        );
        let _ = writeln!(text, "  params {}", record["params"]);
        let _ = writeln!(text, "  env {}", record["env"]);
        let executor = &record["executor"];
        let programs: Vec<&str> = executor["programs"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  executor {} {}",
            executor["executor"],
            programs.join(",")
        );
        let _ = writeln!(text, "  inputs {}", record["inputs"]);
        let deps: Vec<&str> = record["deps"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let _ = writeln!(text, "  deps {}", deps.join(","));
    }
    text
}

#[test]
fn key_records_of_the_fake_workspace() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:dbg-arm64"], 0);
    insta::assert_snapshot!(records(&ws, "//6.6.x:dbg-arm64"));
}
