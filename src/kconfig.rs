//! Kernel config files as data: parsing, overlaying fragments, and option-level comparison.

use std::collections::BTreeMap;

/// Symbols that record the toolchain rather than a choice; a new compiler changes them.
const TOOLCHAIN_SYMBOLS: &[&str] = &[
    "CONFIG_CC_VERSION_TEXT",
    "CONFIG_CC_IS_GCC",
    "CONFIG_GCC_VERSION",
    "CONFIG_CC_IS_CLANG",
    "CONFIG_CLANG_VERSION",
    "CONFIG_AS_IS_GNU",
    "CONFIG_AS_IS_LLVM",
    "CONFIG_AS_VERSION",
    "CONFIG_LD_IS_BFD",
    "CONFIG_LD_IS_LLD",
    "CONFIG_LD_VERSION",
    "CONFIG_LLD_VERSION",
    "CONFIG_RUSTC_VERSION",
    "CONFIG_RUSTC_LLVM_VERSION",
    "CONFIG_BINDGEN_VERSION_TEXT",
    "CONFIG_PAHOLE_VERSION",
    "CONFIG_GCC_ASM_GOTO_OUTPUT_BROKEN",
];

pub fn is_toolchain_symbol(symbol: &str) -> bool {
    TOOLCHAIN_SYMBOLS.contains(&symbol)
        || symbol.starts_with("CONFIG_CC_HAS_")
        || symbol.starts_with("CONFIG_AS_HAS_")
        || symbol.starts_with("CONFIG_TOOLCHAIN_HAS_")
        || symbol.starts_with("CONFIG_LD_CAN_")
}

/// One assignment with the line it came from (1-based).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Setting {
    /// `y`, `m`, a number, a quoted string, or `n` for `# CONFIG_X is not set`.
    pub value: String,
    pub line: usize,
}

/// A parsed config: the last assignment of each symbol wins, as in Kconfig.
#[derive(Clone, Default, Debug)]
pub struct Config {
    pub settings: BTreeMap<String, Setting>,
    /// Whether the file looks like a full `.config` rather than a minimal defconfig.
    pub full: bool,
}

pub fn parse(text: &str) -> Config {
    let mut config = Config {
        full: text.contains("# Automatically generated file; DO NOT EDIT."),
        ..Config::default()
    };
    for (i, line) in text.lines().enumerate() {
        if let Some((symbol, value)) = parse_line(line) {
            config.settings.insert(
                symbol.to_string(),
                Setting {
                    value: value.to_string(),
                    line: i + 1,
                },
            );
        }
    }
    config
}

/// One line's setting, read as Kconfig reads a config: `CONFIG_X=v` or `# CONFIG_X is not set`
/// (blanks around the line ignored); anything else is no setting.
pub fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let symbol = rest.strip_suffix(" is not set")?;
        return symbol.starts_with("CONFIG_").then_some((symbol, "n"));
    }
    let (symbol, value) = line.split_once('=')?;
    symbol.starts_with("CONFIG_").then_some((symbol, value))
}

/// Renders one assignment as Kconfig writes it.
pub fn render(symbol: &str, value: &str) -> String {
    if value == "n" {
        format!("# {symbol} is not set")
    } else {
        format!("{symbol}={value}")
    }
}

/// One option whose value differs between what was asked for and what Kconfig resolved.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mismatch {
    pub symbol: String,
    /// `None`: the option is absent on that side.
    pub wanted: Option<String>,
    pub got: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "absent".into());
        write!(
            f,
            "{}: wanted {}, resolved {}",
            self.symbol,
            show(&self.wanted),
            show(&self.got)
        )
    }
}

/// Option-by-option differences, ignoring toolchain symbols.
pub fn diff(wanted: &Config, got: &Config) -> Vec<Mismatch> {
    let symbols: std::collections::BTreeSet<&String> =
        wanted.settings.keys().chain(got.settings.keys()).collect();
    symbols
        .into_iter()
        .filter(|s| !is_toolchain_symbol(s))
        .filter_map(|s| {
            let w = wanted.settings.get(s).map(|x| x.value.clone());
            let g = got.settings.get(s).map(|x| x.value.clone());
            // An absent option and `is not set` mean the same thing.
            let same = w == g
                || (w.as_deref().unwrap_or("n") == "n" && g.as_deref().unwrap_or("n") == "n");
            (!same).then(|| Mismatch {
                symbol: s.clone(),
                wanted: w,
                got: g,
            })
        })
        .collect()
}

/// Whether a resolved value `got` (absent: off) meets a requirement: `m` is met by a module or
/// built in, `n` by off or absent, anything else by itself only.
pub fn meets(got: Option<&str>, want: &str) -> bool {
    let got = got.unwrap_or("n");
    match want {
        "m" => got == "m" || got == "y",
        _ => got == want,
    }
}

/// The requested settings of `fragment` that `resolved` does not have.
pub fn unmet<'a>(
    fragment: &'a Config,
    resolved: &Config,
) -> Vec<(&'a String, &'a Setting, Option<String>)> {
    fragment
        .settings
        .iter()
        .filter(|(s, _)| !is_toolchain_symbol(s))
        .filter_map(|(symbol, want)| {
            let got = resolved.settings.get(symbol).map(|x| x.value.clone());
            let ok = got.as_deref().unwrap_or("n") == want.value;
            (!ok).then_some((symbol, want, got))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_of_assignment() {
        let c = parse("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x\"\nCONFIG_A=m\n");
        assert_eq!(
            c.settings["CONFIG_A"],
            Setting {
                value: "m".into(),
                line: 5
            }
        );
        assert_eq!(c.settings["CONFIG_B"].value, "n");
        assert!(!c.full);
    }

    #[test]
    fn diff_ignores_toolchain_and_absent_equals_not_set() {
        let a = parse("CONFIG_CC_VERSION_TEXT=\"gcc 12\"\nCONFIG_A=y\n# CONFIG_B is not set\n");
        let b = parse("CONFIG_CC_VERSION_TEXT=\"gcc 13\"\nCONFIG_A=m\n");
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "CONFIG_A: wanted y, resolved m");
    }

    #[test]
    fn a_module_requirement_is_met_built_in_and_off_is_met_by_absent() {
        assert!(meets(Some("y"), "m"));
        assert!(meets(Some("m"), "m"));
        assert!(!meets(Some("m"), "y"));
        assert!(!meets(None, "m"));
        assert!(meets(None, "n"));
        assert!(!meets(Some("y"), "n"));
        assert!(meets(Some("\"x\""), "\"x\""));
    }

    #[test]
    fn unmet_names_missing_requests() {
        let frag = parse("CONFIG_X=y\n# CONFIG_Y is not set\n");
        let resolved = parse("CONFIG_Y=y\n");
        let u = unmet(&frag, &resolved);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].0, "CONFIG_X");
        assert_eq!(u[0].1.line, 1);
    }
}

/// The `depends on` expressions of `config SYMBOL` (without the `CONFIG_` prefix) in the Kconfig
/// files under `tree`, for explaining why Kconfig dropped a requested value.
pub fn depends_on(tree: &std::path::Path, symbol: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                stack.push(path);
            } else if name.to_string_lossy().starts_with("Kconfig")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                found.extend(depends_in(&text, symbol));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The conditions of `config SYMBOL` blocks in one Kconfig file: their `depends on` lines and
/// the `if` blocks around them.
fn depends_in(text: &str, symbol: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut ifs: Vec<String> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let starts_block =
            !line.starts_with([' ', '\t']) && !trimmed.is_empty() && !trimmed.starts_with('#');
        if starts_block {
            let mut words = trimmed.split_whitespace();
            let keyword = words.next();
            match keyword {
                Some("if") => ifs.push(trimmed[2..].trim().to_string()),
                Some("endif") => drop(ifs.pop()),
                _ => {}
            }
            inside =
                matches!(keyword, Some("config" | "menuconfig")) && words.next() == Some(symbol);
            if inside {
                out.extend(ifs.iter().map(|c| format!("{c} (an enclosing `if`)")));
            }
        } else if inside && let Some(expr) = trimmed.strip_prefix("depends on") {
            out.push(expr.trim().to_string());
        }
    }
    out
}

/// The symbols an expression names that `config` resolves to off, e.g. `NET` in `NETDEVICES && NET`.
pub fn off_symbols(expr: &str, config: &Config) -> Vec<String> {
    let mut off: Vec<String> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            !w.is_empty()
                && w.chars().any(|c| c.is_ascii_uppercase())
                && !w.chars().all(|c| c.is_ascii_digit())
        })
        .filter(|w| {
            config
                .settings
                .get(&format!("CONFIG_{w}"))
                .is_none_or(|s| s.value == "n")
        })
        .map(String::from)
        .collect();
    off.dedup();
    off
}

#[cfg(test)]
mod kconfig_file_tests {
    use super::*;

    #[test]
    fn finds_depends_of_a_symbol() {
        let text = "config VETH\n\ttristate \"veth\"\n\tdepends on NETDEVICES && NET\n\thelp\n\t  x\n\nconfig OTHER\n\tdepends on FOO\n";
        assert_eq!(
            depends_in(text, "VETH"),
            vec!["NETDEVICES && NET".to_string()]
        );
        assert!(depends_in(text, "VET").is_empty());
        let resolved = parse("CONFIG_NETDEVICES=y\n");
        assert_eq!(
            off_symbols("NETDEVICES && NET", &resolved),
            vec!["NET".to_string()]
        );
    }
}
