//! Shell integration: completion scripts that load in their shell, and man pages.

mod common;

use std::process::Command;

fn kbuild(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_bash_completion_loads_and_completes_subcommands() {
    let script = format!(
        "source <({} completions bash) && complete -p kbuild && \
         COMP_WORDS=(kbuild pl) COMP_CWORD=1 COMP_LINE='kbuild pl' COMP_POINT=9 && \
         _kbuild kbuild pl kbuild && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        env!("CARGO_BIN_EXE_kbuild")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _kbuild_with_labels kbuild"), "{text}");
    assert!(text.lines().any(|l| l == "plan"), "{text}");
}

/// Labels come from the workspace's manifest, also after the colon bash splits words at.
#[test]
fn the_bash_completion_completes_target_labels() {
    let ws = common::Ws::new();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kbuild"))
        .parent()
        .unwrap();
    let complete = |words: &str, cword: usize, line: &str| {
        let script = format!(
            "source <(kbuild completions bash) && COMP_WORDS=({words}) COMP_CWORD={cword} \
             COMP_LINE='{line}' COMP_POINT={} && _kbuild_with_labels kbuild x y && \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            line.len()
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(ws.path())
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        got.sort();
        got
    };
    let all = complete("kbuild run //6.6", 2, "kbuild run //6.6");
    assert!(all.contains(&"//6.6.x:amd64".to_string()), "{all:?}");
    assert!(all.contains(&"//6.6.x:dbg-arm64".to_string()), "{all:?}");
    assert!(all.iter().all(|l| l.starts_with("//6.6.x:")), "{all:?}");
    let after_colon = complete("kbuild run //6.6.x : dbg", 4, "kbuild run //6.6.x:dbg");
    assert!(
        after_colon.contains(&"dbg-arm64".to_string()),
        "{after_colon:?}"
    );
    assert!(
        after_colon.iter().all(|l| l.starts_with("dbg")),
        "{after_colon:?}"
    );
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let out = kbuild(&["completions", shell]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["run", "plan", "why", "update-refs", "completions"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let bad = kbuild(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = kbuild(&["man", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.path().join("kbuild.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH kbuild 1"),
        "{main}"
    );
    assert!(main.contains("update\\-refs"), "{main}");
    let run = std::fs::read_to_string(dir.path().join("kbuild-run.1")).unwrap();
    assert!(run.contains("keep\\-going"), "{run}");
}
