//! `kbuild why` in kernel terms: options of a changed config, the files of a changed patch.

mod common;

use common::{PATCH, Ws};

/// The line `why` prints for `action`.
fn line_of(why: &str, action: &str) -> String {
    why.lines()
        .find(|l| l.starts_with(&format!("{action}: ")))
        .unwrap_or_else(|| panic!("no {action} in:\n{why}"))
        .to_string()
}

#[test]
fn a_changed_fragment_is_said_as_the_options_that_changed() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:dbg-amd64"], 0);
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_DEBUG_INFO=n\nCONFIG_KASAN=y\n",
    );
    let line = line_of(&ws.why("//6.6.x:dbg-amd64"), "configure //6.6.x:dbg-amd64");
    assert!(
        line.ends_with(
            "will run: CONFIG_DEBUG_INFO: y → n, CONFIG_KASAN: unset → y in kernel/common/config-dbg"
        ),
        "{line}"
    );
    // The run remembers it in those terms too.
    ws.run(&["//6.6.x:dbg-amd64"], 0);
    let line = line_of(&ws.why("//6.6.x:dbg-amd64"), "configure //6.6.x:dbg-amd64");
    assert!(
        line.contains("last ran because CONFIG_DEBUG_INFO: y → n"),
        "{line}"
    );
}

#[test]
fn a_committed_config_change_lists_its_options() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    ws.set_amd64_cpus(8);
    let line = line_of(&ws.why("//6.6.x:amd64"), "configure //6.6.x:amd64");
    assert!(
        line.ends_with("CONFIG_NR_CPUS: 64 → 8 in kernel/6.6.x/config-x86_64"),
        "{line}"
    );
}

#[test]
fn a_patch_is_named_with_the_files_it_touches() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let second = PATCH
        .replace("init/main.c", "drivers/fake.c")
        .replace("0001", "0002");
    ws.write("kernel/6.6.x/patches/0002-drivers-fake.patch", &second);
    let line = line_of(&ws.why("//6.6.x:amd64"), "patch //6.6.x");
    assert!(
        line.ends_with(
            "patch `kernel/6.6.x/patches/0002-drivers-fake.patch` added (touches drivers/fake.c)"
        ),
        "{line}"
    );
    std::fs::remove_file(
        ws.path()
            .join("kernel/6.6.x/patches/0001-init-say-hello.patch"),
    )
    .unwrap();
    std::fs::remove_file(
        ws.path()
            .join("kernel/6.6.x/patches/0002-drivers-fake.patch"),
    )
    .unwrap();
    // Removed: its text comes from what the cache kept when the last run used it.
    let line = line_of(&ws.why("//6.6.x:amd64"), "patch //6.6.x");
    assert!(
        line.ends_with(
            "patch `kernel/6.6.x/patches/0001-init-say-hello.patch` removed (touches init/main.c)"
        ),
        "{line}"
    );
}

#[test]
fn a_new_source_is_said_as_the_tarballs() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let (_, sha) = common::make_tarball(&ws.path().join("sources"), "6.6.72");
    let old_line = ws.source_line();
    ws.edit(
        "kernel.kdl",
        &old_line,
        &format!("    source \"file://sources/linux-6.6.72.tar\" sha256=\"{sha}\""),
    );
    ws.edit("kernel.kdl", "version \"6.6.71\"", "version \"6.6.72\"");
    let line = line_of(&ws.why("//6.6.x:amd64"), "patch //6.6.x");
    assert!(
        line.ends_with("will run: source changed (linux-6.6.71.tar → linux-6.6.72.tar)"),
        "{line}"
    );
    ws.run(&["//6.6.x:amd64"], 0);
    let line = line_of(&ws.why("//6.6.x:amd64"), "patch //6.6.x");
    assert!(
        line.ends_with("last ran because source changed (linux-6.6.71.tar → linux-6.6.72.tar)"),
        "{line}"
    );
}
