//! `kbuild kconfig split` and `kbuild kconfig diff`: comparing configs option by option.
//!
//! split writes, like LinuxKit's scripts/kconfig-split.py, `split-common` with the settings all
//! configs share and `split-<name>` per config with the rest, sorted by option, one per line.
//! It reads configs as Kconfig does, which differs from that script's pattern where a line is
//! not what Kconfig writes (doc/maintainers.md lists each case).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::kconfig::{self, Config, Mismatch};

/// One config's settings as (symbol, value) pairs.
type Settings = BTreeSet<(String, String)>;

fn settings(config: &Config) -> Settings {
    config
        .settings
        .iter()
        .map(|(s, v)| (s.clone(), v.value.clone()))
        .collect()
}

fn render(set: &Settings) -> String {
    set.iter()
        .map(|(symbol, value)| format!("{}\n", kconfig::render(symbol, value)))
        .collect()
}

/// Why split could not run, naming the file.
#[derive(Debug)]
pub enum SplitError {
    Read(PathBuf, std::io::Error),
    Write(PathBuf, std::io::Error),
    /// Two inputs whose outputs would be the same `split-<name>`.
    SameName(String, PathBuf, PathBuf),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Read(path, e) => write!(f, "reading {}: {e}", path.display()),
            SplitError::Write(path, e) => write!(f, "writing {}: {e}", path.display()),
            SplitError::SameName(name, a, b) => write!(
                f,
                "{} and {} would both be written as split-{name}: give the configs distinct file names",
                a.display(),
                b.display()
            ),
        }
    }
}

/// A setting given twice in one config: Kconfig takes the last, as split does.
#[derive(Debug, PartialEq, Eq)]
pub struct Repeat {
    pub file: PathBuf,
    pub symbol: String,
    pub first: usize,
    pub again: usize,
}

fn read_text(path: &Path) -> Result<String, SplitError> {
    std::fs::read_to_string(path).map_err(|e| SplitError::Read(path.to_path_buf(), e))
}

/// Reads one config file, naming it in the error.
pub fn read(path: &Path) -> Result<Config, SplitError> {
    read_text(path).map(|t| kconfig::parse(&t))
}

/// The settings of `path` given more than once.
fn repeats(path: &Path, text: &str) -> Vec<Repeat> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((symbol, _)) = kconfig::parse_line(line) else {
            continue;
        };
        match first.get(symbol) {
            Some(&at) => found.push(Repeat {
                file: path.to_path_buf(),
                symbol: symbol.to_string(),
                first: at,
                again: i + 1,
            }),
            None => {
                first.insert(symbol, i + 1);
            }
        }
    }
    found
}

/// What split wrote, and the repeated settings it saw.
pub struct Split {
    pub written: Vec<PathBuf>,
    pub repeats: Vec<Repeat>,
}

/// The common settings and, per input, its own.
pub fn split(inputs: &[PathBuf], out: &Path) -> Result<Split, SplitError> {
    let mut configs: BTreeMap<String, (&PathBuf, Settings)> = BTreeMap::new();
    let mut all_repeats = Vec::new();
    for input in inputs {
        let name = input.file_name().map_or_else(
            || input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let text = read_text(input)?;
        all_repeats.extend(repeats(input, &text));
        if let Some((earlier, _)) = configs.get(&name) {
            return Err(SplitError::SameName(
                name,
                earlier.to_path_buf(),
                input.to_path_buf(),
            ));
        }
        configs.insert(name, (input, settings(&kconfig::parse(&text))));
    }
    let mut common = configs
        .values()
        .next()
        .map(|(_, set)| set.clone())
        .unwrap_or_default();
    for (_, set) in configs.values() {
        common = common.intersection(set).cloned().collect();
    }
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text)
            .map(|()| path.clone())
            .map_err(|e| SplitError::Write(path, e))
    };
    std::fs::create_dir_all(out).map_err(|e| SplitError::Write(out.to_path_buf(), e))?;
    let mut written = vec![write(out.join("split-common"), render(&common))?];
    for (name, (_, set)) in &configs {
        let own: BTreeSet<_> = set.difference(&common).cloned().collect();
        written.push(write(out.join(format!("split-{name}")), render(&own))?);
    }
    Ok(Split {
        written,
        repeats: all_repeats,
    })
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
    fn same_file_names_are_an_error_and_repeats_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::write(
                dir.path().join(d).join("config-x86_64"),
                "CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=m\n",
            )
            .unwrap();
        }
        let inputs = [
            dir.path().join("a/config-x86_64"),
            dir.path().join("b/config-x86_64"),
        ];
        let e = split(&inputs, &dir.path().join("out")).err().unwrap();
        assert!(matches!(e, SplitError::SameName(..)), "{e}");
        assert!(e.to_string().contains("distinct file names"), "{e}");
        assert!(!dir.path().join("out").exists(), "nothing written");
        std::fs::rename(&inputs[1], dir.path().join("b/config-aarch64")).unwrap();
        let done = split(
            &[inputs[0].clone(), dir.path().join("b/config-aarch64")],
            &dir.path().join("out"),
        )
        .unwrap();
        assert_eq!(done.repeats.len(), 2);
        assert_eq!((done.repeats[0].first, done.repeats[0].again), (1, 3));
        let e = split(&[dir.path().join("nope")], &dir.path().join("out"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("nope"), "{e}");
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
