//! Hostile or broken manifests: refused with a spanned error and exit 2, never a crash.

mod common;

use common::Ws;

fn check(ws: &Ws) -> (Option<i32>, String) {
    let out = ws.kbuild(&["check"]);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_manifest_nested_1500_levels_deep_is_refused_not_a_stack_overflow() {
    let ws = Ws::new();
    let deep = format!("{}{}\n", "a {".repeat(1500), "}".repeat(1500));
    ws.write("kernel.kdl", &deep);
    let (code, stderr) = check(&ws);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("blocks nest deeper than 32 levels"), "{stderr}");
    assert!(stderr.contains("kernel.kdl:1:"), "spanned: {stderr}");
}
