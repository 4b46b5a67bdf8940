//! Source pins (kernel.lock) and per-machine source replacement (kernel.local.kdl).

mod common;

use common::{Ws, make_tarball};

/// A workspace whose kernel.kdl names its source without a sha256.
fn unpinned() -> Ws {
    let ws = Ws::new();
    let text = ws.read("kernel.kdl");
    let start = text.find(" sha256=\"").unwrap();
    let end = start + " sha256=\"".len() + 64 + 1;
    ws.write("kernel.kdl", &format!("{}{}", &text[..start], &text[end..]));
    ws
}

#[test]
fn the_first_fetch_pins_the_source_in_kernel_lock() {
    let ws = unpinned();
    let plan = String::from_utf8(ws.kbuild(&["plan"]).stdout).unwrap();
    assert!(
        plan.contains("run     fetch linux-6.6.71.tar@unpinned"),
        "{plan}"
    );
    let locked = ws.kbuild(&["run", "--locked", "//6.6.x:amd64"]);
    assert_eq!(locked.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&locked.stderr)
            .contains("is not pinned and --locked forbids pinning it")
    );
    assert!(!ws.path().join("kernel.lock").exists());

    ws.run(&["//6.6.x:amd64"], 0);
    let lock = ws.read("kernel.lock");
    let sha = kbuild::digest::Sha256::of_file(&ws.path().join("sources/linux-6.6.71.tar")).unwrap();
    assert!(lock.contains(&format!("sha256=\"{sha}\"")), "{lock}");
    // Now pinned: the fetch is keyed by the pin and reruns once, producing the same tarball, so
    // nothing is rebuilt; the image records the pin in /kernel-source-info, so it is repackaged.
    let r = ws.run(&["--locked", "//6.6.x:amd64"], 0);
    let executed = r.executed();
    assert!(
        executed[1].starts_with(&format!("fetch linux-6.6.71.tar@{}", &sha.as_str()[..12])),
        "{executed:?}"
    );
    // The SBOM and the provenance state the pin too.
    assert_eq!(executed[0], "attest //6.6.x:amd64");
    assert_eq!(executed[6], "sbom //6.6.x:amd64");
    let rest = [
        "image //6.6.x:amd64",
        "index //6.6.x",
        "layer //6.6.x:amd64",
        "package //6.6.x:amd64",
        "tag //6.6.x:amd64",
    ];
    let others: Vec<&String> = (executed.iter().enumerate())
        .filter(|(i, _)| ![0, 1, 6].contains(i))
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        others,
        rest.iter().collect::<Vec<_>>(),
        "nothing is rebuilt, the image is repackaged"
    );
}

#[test]
fn a_pin_that_does_not_match_fails_and_stores_nothing() {
    let ws = unpinned();
    let url = ws
        .read("kernel.kdl")
        .lines()
        .find(|l| l.contains("source \""))
        .unwrap()
        .trim()
        .to_string();
    ws.write(
        "kernel.lock",
        &format!("{url} sha256=\"{}\"\n", "0".repeat(64)),
    );
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(r.stderr.contains("sha256 mismatch"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("expected {}", "0".repeat(64))),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("actual   "), "{}", r.stderr);
    let again = ws.run(&["//6.6.x:amd64"], 1);
    assert_eq!(again.failed().len(), 1, "the failed fetch was not cached");
}

#[test]
fn kernel_local_kdl_replaces_a_source_and_plan_says_so() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    // The same tree under another name, e.g. a distribution's source package.
    let (other, sha) = make_tarball(&ws.path().join("mirror"), "6.6.71-local");
    ws.write(
        "kernel.local.kdl",
        &format!(
            "replace \"6.6.x\" \"file://{}\" sha256=\"{sha}\"\n",
            other.display()
        ),
    );
    let plan = String::from_utf8(ws.kbuild(&["plan", "//6.6.x:amd64"]).stdout).unwrap();
    assert!(
        plan.contains("source of 6.6.x replaced by kernel.local.kdl: file://"),
        "{plan}"
    );
    assert!(
        plan.contains("run     fetch linux-6.6.71-local.tar@"),
        "{plan}"
    );
    let why = String::from_utf8(ws.kbuild(&["why", "//6.6.x:amd64"]).stdout).unwrap();
    assert!(why.contains("replaced by kernel.local.kdl"), "{why}");
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        r.executed()
            .iter()
            .any(|n| n.starts_with("fetch linux-6.6.71-local.tar@"))
    );

    ws.write(
        "kernel.local.kdl",
        &format!("replace \"6.6.x\" \"file://{}\"\n", other.display()),
    );
    let unpinned = String::from_utf8(ws.kbuild(&["plan"]).stderr).unwrap();
    assert!(
        unpinned.contains("a replacement needs its own sha256="),
        "{unpinned}"
    );

    ws.write("kernel.local.kdl", "replace \"6.6.y\" \"file:///x.tar\"\n");
    let bad = ws.kbuild(&["plan"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("no series or tool source `6.6.y` to replace")
            && stderr.contains("kernel.local.kdl"),
        "{stderr}"
    );
}

#[test]
fn sources_download_over_http_trying_mirrors_in_order() {
    let ws = Ws::new();
    let tar = std::fs::read(ws.path().join("sources/linux-6.6.71.tar")).unwrap();
    let sha = kbuild::digest::Sha256::of_file(&ws.path().join("sources/linux-6.6.71.tar")).unwrap();
    let port = common::serve(vec![("/mirror/linux-6.6.71.tar".into(), tar)], 2);
    let text = ws.read("kernel.kdl");
    let line = ws.source_line();
    let http = format!(
        "    source \"http://127.0.0.1:{port}/gone/linux-6.6.71.tar\" \"http://127.0.0.1:{port}/mirror/linux-6.6.71.tar\" sha256=\"{sha}\""
    );
    ws.write("kernel.kdl", &text.replace(&line, &http));
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        r.executed()
            .iter()
            .any(|n| n.starts_with("fetch linux-6.6.71.tar@")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_download_that_does_not_match_its_pin_stores_nothing() {
    let ws = Ws::new();
    let port = common::serve(
        vec![("/linux-6.6.71.tar".into(), b"not a kernel".to_vec())],
        4,
    );
    let text = ws.read("kernel.kdl");
    let line = ws.source_line();
    let sha = ws.source_sha();
    let http = format!("    source \"http://127.0.0.1:{port}/linux-6.6.71.tar\" sha256=\"{sha}\"");
    ws.write("kernel.kdl", &text.replace(&line, &http));
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(
        r.stderr.contains(&format!("expected {sha}")),
        "{}",
        r.stderr
    );
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert_eq!(r.failed().len(), 1, "nothing was cached, so it fails again");
}
