//! The repository's own kernel.kdl, as a user on a machine without kernel.org meets it: the
//! replacements its top comment shows are run as they are written there.

use std::path::Path;
use std::process::Command;

fn kbuild(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("KBUILD_CACHE", dir.join("cache"))
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// `kbuild check` with the comment's `replace` lines in kernel.local.kdl passes, after the bump
/// the comment names when Debian's package has moved on past kernel.kdl's version.
#[test]
#[ignore = "needs Debian's linux-source-6.1 and -6.12 (KBUILD_SETUP_REAL=1 bash .ci/setup)"]
fn the_replacements_in_kernel_kdls_comment_work() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("kernel.kdl")).unwrap();
    let replacements: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("//   replace "))
        .collect();
    assert_eq!(replacements.len(), 2, "the comment shows both series");
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("kernel.kdl"), &text).unwrap();
    copy_dir(&repo.join("kernel"), &ws.path().join("kernel"));
    let local: String = replacements
        .iter()
        .map(|r| format!("replace {r}\n"))
        .collect();
    std::fs::write(ws.path().join("kernel.local.kdl"), local).unwrap();
    let mut check = kbuild(ws.path(), &["check"]);
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    // "series `6.12.x`: the package's tarball is Linux 6.12.119, but kernel.kdl says …"
    for line in stderr.lines() {
        let Some(rest) = line.split("series `").nth(1) else {
            continue;
        };
        let Some((series, rest)) = rest.split_once('`') else {
            continue;
        };
        let Some(version) = rest
            .split("the package's tarball is Linux ")
            .nth(1)
            .and_then(|r| r.split(',').next())
        else {
            continue;
        };
        let bump = kbuild(ws.path(), &["bump", series, version, "--write"]);
        assert!(
            bump.status.success(),
            "{}",
            String::from_utf8_lossy(&bump.stderr)
        );
        check = kbuild(ws.path(), &["check"]);
    }
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Every shipped config meets the requirements kernel.kdl declares (what containers need). The
/// committed configs are full ones, equal to what Kconfig resolves (the series check them
/// exactly), so this is the check-config action's verdict without building.
#[test]
fn every_shipped_config_meets_the_declared_requirements() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = kbuild::manifest::load(repo).unwrap();
    let mut checked = 0;
    for series in &model.series {
        assert!(
            !series.requires.is_empty(),
            "{} requires nothing",
            series.name
        );
        for &arch in &series.arches {
            let config = std::fs::read_to_string(repo.join(series.config_path(arch))).unwrap();
            let resolved = kbuild::kconfig::parse(&config);
            for file in &series.requires {
                let file = kbuild::model::expand(file, &series.name, Some(arch));
                let text = std::fs::read_to_string(repo.join(&file)).unwrap();
                for (symbol, want) in kbuild::kconfig::parse(&text).settings {
                    let got = resolved.settings.get(&symbol).map(|s| s.value.as_str());
                    assert!(
                        kbuild::kconfig::meets(got, &want.value),
                        "{}: {} on {arch}: {symbol}={} required, resolved {got:?}",
                        file,
                        series.name,
                        want.value
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "{checked} requirements checked");
}
