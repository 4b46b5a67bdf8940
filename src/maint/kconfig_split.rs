//! `kbuild kconfig split` and `kbuild kconfig diff`: comparing configs option by option.
//!
//! split writes, like LinuxKit's scripts/kconfig-split.py, `split-common` with the settings all
//! configs share and `split-<name>` per config with the rest, sorted by option, one per line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::kconfig::{self, Config, Mismatch};

fn settings(config: &Config) -> BTreeSet<(String, String)> {
    config
        .settings
        .iter()
        .map(|(s, v)| (s.clone(), v.value.clone()))
        .collect()
}

fn render(set: &BTreeSet<(String, String)>) -> String {
    set.iter()
        .map(|(symbol, value)| format!("{}\n", kconfig::render(symbol, value)))
        .collect()
}

/// The common settings and, per input, its own; returns the files written.
pub fn split(inputs: &[PathBuf], out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut configs: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for input in inputs {
        let name = input.file_name().map_or_else(
            || input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        configs.insert(
            name,
            settings(&kconfig::parse(&std::fs::read_to_string(input)?)),
        );
    }
    let mut common = configs.values().next().cloned().unwrap_or_default();
    for set in configs.values() {
        common = common.intersection(set).cloned().collect();
    }
    std::fs::create_dir_all(out)?;
    let mut written = vec![out.join("split-common")];
    std::fs::write(&written[0], render(&common))?;
    for (name, set) in &configs {
        let own: BTreeSet<_> = set.difference(&common).cloned().collect();
        let path = out.join(format!("split-{name}"));
        std::fs::write(&path, render(&own))?;
        written.push(path);
    }
    Ok(written)
}

/// Option-level differences between two configs (toolchain symbols included: this is for
/// people reading two configs, not for the build's check).
pub fn diff(a: &Config, b: &Config) -> Vec<Mismatch> {
    let symbols: BTreeSet<&String> = a.settings.keys().chain(b.settings.keys()).collect();
    symbols
        .into_iter()
        .filter_map(|s| {
            let (x, y) = (
                a.settings.get(s).map(|v| v.value.clone()),
                b.settings.get(s).map(|v| v.value.clone()),
            );
            (x != y).then(|| Mismatch {
                symbol: s.clone(),
                wanted: x,
                got: y,
            })
        })
        .collect()
}

/// `-CONFIG_X=y` / `+CONFIG_X=m` lines, as a reader expects of a diff.
pub fn render_diff(diff: &[Mismatch]) -> String {
    let mut out = String::new();
    for m in diff {
        if let Some(old) = &m.wanted {
            out.push_str(&format!("-{}\n", kconfig::render(&m.symbol, old)));
        }
        if let Some(new) = &m.got {
            out.push_str(&format!("+{}\n", kconfig::render(&m.symbol, new)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_what_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("config-x86_64"),
            dir.path().join("config-aarch64"),
        );
        std::fs::write(&a, "CONFIG_A=y\nCONFIG_X86=y\n# CONFIG_B is not set\n").unwrap();
        std::fs::write(&b, "CONFIG_A=y\nCONFIG_ARM64=y\n# CONFIG_B is not set\n").unwrap();
        split(&[a, b], &dir.path().join("out")).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join("out").join(n)).unwrap();
        assert_eq!(read("split-common"), "CONFIG_A=y\n# CONFIG_B is not set\n");
        assert_eq!(read("split-config-x86_64"), "CONFIG_X86=y\n");
        assert_eq!(read("split-config-aarch64"), "CONFIG_ARM64=y\n");
    }

    #[test]
    fn diff_reads_like_a_diff() {
        let d = diff(
            &kconfig::parse("CONFIG_A=y\nCONFIG_B=y\n"),
            &kconfig::parse("CONFIG_A=m\nCONFIG_C=y\n"),
        );
        assert_eq!(
            render_diff(&d),
            "-CONFIG_A=y\n+CONFIG_A=m\n-CONFIG_B=y\n+CONFIG_C=y\n"
        );
    }
}
