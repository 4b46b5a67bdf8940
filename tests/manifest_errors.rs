//! Manifest and label errors as a user sees them: spans in kernel.kdl, help lines, exit code 2.
//! Snapshots live in tests/snapshots; temp paths are redacted.

mod common;

use common::Ws;

/// Replaces the manifest of a fresh workspace with `text` and returns what `kbuild check` printed.
fn check(text: &str) -> String {
    let ws = Ws::new();
    ws.write("kernel.kdl", text);
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2), "a manifest error exits 2");
    let stderr = String::from_utf8(out.stderr).unwrap();
    stderr.replace(&ws.path().display().to_string(), "[WS]")
}

const GOOD_SERIES: &str = r#"series "6.6.x" {
    version "6.6.71"
    source "file:///dev/null" sha256="0000000000000000000000000000000000000000000000000000000000000000"
}
"#;

#[test]
fn syntax_error() {
    insta::assert_snapshot!(check("series \"6.6.x\" {\n    version 6.6.71\n}\n"));
}

#[test]
fn unknown_node_suggests_the_close_one() {
    insta::assert_snapshot!(check(&format!("varaint \"dbg\"\n{GOOD_SERIES}")));
}

#[test]
fn unknown_property_and_bad_sha() {
    insta::assert_snapshot!(check(
        "series \"6.6.x\" {\n    version \"6.6.71\"\n    source \"https://example.org/linux-6.6.71.tar.xz\" sha265=\"00\"\n}\n"
    ));
}

#[test]
fn version_outside_its_series() {
    insta::assert_snapshot!(check(&GOOD_SERIES.replace("6.6.71", "6.7.1")));
}

#[test]
fn duplicate_series() {
    insta::assert_snapshot!(check(&format!("{GOOD_SERIES}{GOOD_SERIES}")));
}

#[test]
fn unknown_variant_tool_and_arch() {
    let text = GOOD_SERIES.replace(
        "    version",
        "    variants \"dgb\"\n    tools \"pref\"\n    arches \"x86_64\" \"arm46\"\n    version",
    );
    insta::assert_snapshot!(check(&format!("variant \"dbg\"\ntool \"perf\"\n{text}")));
}

#[test]
fn missing_config_file() {
    insta::assert_snapshot!(check(
        &GOOD_SERIES
            .replace("6.6.x", "6.1.x")
            .replace("6.6.71", "6.1.100")
    ));
}

#[test]
fn unknown_label_lists_close_matches() {
    let ws = Ws::new();
    let out = ws.kbuild(&["plan", "//6.6.x:dgb-arm64"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("no target matches `//6.6.x:dgb-arm64`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean //6.6.x:dbg-arm64"),
        "{stderr}"
    );
}

#[test]
fn every_arch_spelling_names_one_target() {
    let ws = Ws::new();
    let plan = |label: &str| String::from_utf8(ws.kbuild(&["plan", label]).stdout).unwrap();
    assert_eq!(plan("//6.6.x:dbg-aarch64"), plan("//6.6.x:dbg-arm64"));
    assert_eq!(plan("6.6.x:x86_64"), plan("//6.6.x:amd64"));
    let list = String::from_utf8(ws.kbuild(&["list"]).stdout).unwrap();
    assert!(
        list.contains("6.6.x 6.6.71\n  //6.6.x:amd64\n  //6.6.x:dbg-amd64\n  //6.6.x:perf-amd64\n"),
        "{list}"
    );
}

#[test]
fn valid_manifest_checks_clean() {
    let ws = Ws::new();
    let out = ws.kbuild(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn builder_executor_and_endpoint_errors() {
    insta::assert_snapshot!(check(&format!(
        "defaults {{\n    executor \"dockr\"\n    builder \"b:1\" arch=\"arm65\"\n}}\nbuilders {{\n    aarch64 \"ftp://builder\"\n}}\n{GOOD_SERIES}"
    )));
}

#[test]
fn a_value_repeated_in_a_list_is_pointed_at() {
    let text = GOOD_SERIES.replace("}\n", "    arches \"x86_64\" \"aarch64\" \"x86_64\"\n}\n");
    let stderr = check(&text);
    assert!(
        stderr.contains("`x86_64` is given twice in `arches`"),
        "{stderr}"
    );
    assert!(stderr.contains("remove the repeat"), "{stderr}");
    let text = format!(
        "variant \"dbg\"\n{}",
        GOOD_SERIES.replace("}\n", "    variants \"dbg\" \"dbg\"\n}\n")
    );
    let stderr = check(&text);
    assert!(
        stderr.contains("`dbg` is given twice in `variants`"),
        "{stderr}"
    );
}

/// The test and requirement settings: a timeout out of range, a requirement file outside the
/// workspace, and one that is missing.
#[test]
fn test_settings_and_requirement_files() {
    insta::assert_snapshot!(check(&format!(
        "defaults {{\n    test-timeout 0\n    test-timeout 99999999999 arch=\"riscv64\"\n    requires \"../outside\"\n}}\n{}",
        GOOD_SERIES.replace(
            "    version",
            "    requires \"kernel/missing-{arch}\"\n    version"
        )
    )));
}

#[test]
fn a_property_where_a_child_belongs_is_an_error_not_dropped() {
    // `deprecated` is a child of a series; as a property it would retire nothing.
    insta::assert_snapshot!(check(&format!(
        "{}variant \"dbg\" localversion=\"-dbg\" {{\n}}\n",
        GOOD_SERIES.replace("series \"6.6.x\" {", "series \"6.6.x\" deprecated=#true {")
    )));
}
