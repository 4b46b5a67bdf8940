//! Tool images (perf and the like) on the fake kernel tree: the manifest's make arguments, the
//! checks that the binary can run alone in its image, and stripping. `tests/real_kernel.rs`
//! builds the real perf.

mod common;

use common::Ws;

const TOOL: &str = "tool \"perf\" {\n    dir \"tools/perf\"\n    binary \"perf\"\n}";

/// The workspace with the perf tool declared by `body` instead.
fn ws_with_tool(body: &str) -> Ws {
    let ws = Ws::new();
    ws.edit("kernel.kdl", TOOL, &format!("tool \"perf\" {{\n{body}\n}}"));
    ws
}

fn sections(path: &std::path::Path) -> String {
    let out = std::process::Command::new("readelf")
        .arg("-S")
        .arg(path)
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn args_reach_the_tools_make_per_arch_and_rebuild_only_the_tool() {
    // The fake perf prints the ARCH it was made for; a command-line variable overrides it, and
    // the arch's own arguments come after the common ones.
    let ws = ws_with_tool("    args \"ARCH=common\"\n    args \"ARCH=arm-only\" arch=\"aarch64\"");
    ws.run(&["//6.6.x:perf-amd64", "//6.6.x:perf-arm64"], 0);
    assert!(
        ws.read("out/6.6.x/perf-amd64/usr/bin/perf")
            .contains("for common")
    );
    assert!(
        ws.read("out/6.6.x/perf-arm64/usr/bin/perf")
            .contains("for arm-only")
    );

    ws.edit("kernel.kdl", "ARCH=arm-only", "ARCH=arm-again");
    let r = ws.run(&["//6.6.x:perf-amd64", "//6.6.x:perf-arm64"], 0);
    let tools: Vec<_> = r
        .executed()
        .into_iter()
        .filter(|n| n.starts_with("tool "))
        .collect();
    assert_eq!(tools, vec!["tool //6.6.x:perf-arm64"]);
    assert!(
        !r.executed().iter().any(|n| n.starts_with("patch")),
        "{:?}",
        r.executed()
    );
    assert!(
        ws.read("out/6.6.x/perf-arm64/usr/bin/perf")
            .contains("for arm-again")
    );
}

#[test]
fn a_tool_whose_directory_is_not_in_the_tree_is_a_clear_error() {
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        TOOL,
        &format!("{TOOL}\n\ntool \"bpftool\" {{\n    dir \"tools/bpf/bpftool\"\n}}"),
    );
    ws.edit(
        "kernel.kdl",
        "    tools \"perf\"",
        "    tools \"perf\" \"bpftool\"",
    );
    let r = ws.run(&["//6.6.x:bpftool-amd64"], 1);
    assert!(
        r.stderr
            .contains("the kernel tree has no `tools/bpf/bpftool/Makefile`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("drop them from the series' `tools`"));
}

#[test]
fn a_dynamically_linked_tool_is_refused_and_a_static_one_is_stripped() {
    let program = "printf 'int main(void){return 0;}' > $(O)/main.c";
    let dynamic = ws_with_tool(&format!(
        "    args \"--eval=dyn: ; {program} && gcc -g -o $(O)/perf $(O)/main.c\" \"dyn\""
    ));
    let r = dynamic.run(&["//6.6.x:perf-amd64"], 1);
    assert!(
        r.stderr.contains("`perf` is dynamically linked"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("args \"LDFLAGS=-static\""),
        "{}",
        r.stderr
    );
    assert_eq!(r.failed(), vec!["tool //6.6.x:perf-amd64"]);

    let fixed = ws_with_tool(&format!(
        "    args \"--eval=st: ; {program} && gcc -static -g -o $(O)/perf $(O)/main.c\" \"st\"\n    \
         strip #true"
    ));
    fixed.run(&["//6.6.x:perf-amd64"], 0);
    let perf = fixed.path().join("out/6.6.x/perf-amd64/usr/bin/perf");
    assert_eq!(kbuild::elf::interpreter(&perf).unwrap(), None);
    let table = sections(&perf);
    assert!(
        !table.contains(".debug_info") && !table.contains(".symtab"),
        "{table}"
    );
    assert!(
        std::process::Command::new(&perf)
            .status()
            .unwrap()
            .success(),
        "the stripped program still runs"
    );
}
