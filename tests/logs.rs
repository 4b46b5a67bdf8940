//! `kbuild log`: the log of the run that made an action's current cache entry.

mod common;

use common::Ws;

fn log(ws: &Ws, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["log"];
    all.extend(args);
    let out = ws.kbuild(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_log_is_the_one_of_the_run_that_made_the_entry() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let (code, first, err) = log(&ws, &["//6.6.x:amd64"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        first.starts_with("# compile //6.6.x:amd64 (key "),
        "{first}"
    );
    let (_, configure, _) = log(&ws, &["//6.6.x:amd64", "--action", "configure"]);
    assert!(
        configure.starts_with("# configure //6.6.x:amd64"),
        "{configure}"
    );

    // Another option, built; then back: the entry is the first run's, and so is its log,
    // although the workspace's last compile log is the second run's.
    let config = "kernel/6.6.x/config-x86_64";
    ws.edit(config, "CONFIG_NR_CPUS=64", "CONFIG_NR_CPUS=128");
    for action in ["compile", "configure"] {
        let (code, _, err) = log(&ws, &["//6.6.x:amd64", "--action", action]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("has not run with its current inputs"),
            "{action}: {err}"
        );
    }
    ws.run(&["//6.6.x:amd64"], 0);
    let (_, second, _) = log(&ws, &["//6.6.x:amd64"]);
    assert_ne!(second.lines().next(), first.lines().next());
    ws.edit(config, "CONFIG_NR_CPUS=128", "CONFIG_NR_CPUS=64");
    assert!(ws.run(&["//6.6.x:amd64"], 0).executed().is_empty());
    let (_, again, _) = log(&ws, &["//6.6.x:amd64"]);
    assert_eq!(again.lines().next(), first.lines().next());

    let (_, path, _) = log(&ws, &["//6.6.x:amd64", "--path"]);
    assert!(std::path::Path::new(path.trim()).is_file(), "{path}");

    let (code, _, err) = log(&ws, &["//6.6.x:amd64", "--action", "nope"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("has no `nope` action") && err.contains("compile"),
        "{err}"
    );
    let (code, _, err) = log(&ws, &["//6.6.x:..."]);
    assert_eq!(code, Some(2));
    assert!(err.contains("name one target"), "{err}");
}
