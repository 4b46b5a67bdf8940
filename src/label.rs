//! Target labels (`//6.6.x:dbg-arm64`) and patterns (`//...`, `//6.6.x`, `//*:arm64`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::model::{Model, VariantSet};

/// What a target builds within its series.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum TargetKind {
    Kernel(VariantSet),
    Tool(String),
}

/// One buildable thing: a kernel variant or a tool, for one series and arch.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Label {
    pub series: String,
    pub kind: TargetKind,
    pub arch: Arch,
}

impl Label {
    /// The part after the colon: `dbg-arm64`, `arm64`, `perf-arm64`.
    pub fn name(&self) -> String {
        match &self.kind {
            TargetKind::Kernel(set) if set.is_plain() => self.arch.to_string(),
            TargetKind::Kernel(set) => format!("{}-{}", set.name(), self.arch),
            TargetKind::Tool(tool) => format!("{tool}-{}", self.arch),
        }
    }

    pub fn variants(&self) -> Option<&VariantSet> {
        match &self.kind {
            TargetKind::Kernel(set) => Some(set),
            TargetKind::Tool(_) => None,
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "//{}:{}", self.series, self.name())
    }
}

/// Every target the model declares, in manifest order; deprecated series build nothing.
pub fn all_targets(model: &Model) -> Vec<Label> {
    let mut out = Vec::new();
    for series in model.series.iter().filter(|s| !s.deprecated) {
        for &arch in &series.arches {
            let kinds = std::iter::once(VariantSet::default())
                .chain(series.variants.iter().cloned())
                .filter(|set| model.set_builds_for(set, arch))
                .map(TargetKind::Kernel)
                .chain(series.tools.iter().cloned().map(TargetKind::Tool));
            for kind in kinds {
                out.push(Label {
                    series: series.name.clone(),
                    kind,
                    arch,
                });
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LabelError {
    #[error("`{0}` is not a label")]
    #[diagnostic(help(
        "labels look like //6.6.x:amd64, //6.6.x:dbg-arm64 or //6.6.x:perf-arm64; patterns: //..., //6.6.x, //6.6.x:dbg-*"
    ))]
    Syntax(String),
    #[error("no target matches `{given}`")]
    #[diagnostic(help("{hint}"))]
    NoMatch { given: String, hint: String },
}

/// A parsed pattern: series and name parts, each possibly with `*` wildcards.
struct Pattern {
    series: String,
    name: String,
}

fn parse_pattern(text: &str) -> Result<Pattern, LabelError> {
    let body = text.strip_prefix("//").unwrap_or(text);
    if body == "..." || body.is_empty() {
        return Ok(Pattern {
            series: "*".into(),
            name: "*".into(),
        });
    }
    let (series, name) = match body.split_once(':') {
        Some((series, "all" | "...")) => (series, "*"),
        Some((series, name)) => (series, name),
        None => (body.strip_suffix("/...").unwrap_or(body), "*"),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
    };
    if !ok(series) || !ok(name) {
        return Err(LabelError::Syntax(text.to_string()));
    }
    Ok(Pattern {
        series: series.into(),
        name: normalise_spelling(name),
    })
}

/// Rewrites a trailing arch spelling (`dbg-aarch64`) to the canonical one (`dbg-arm64`), and
/// composed variants without wildcards to their spelling order (`dbg-rt-amd64` is `rt-dbg-amd64`).
fn normalise_spelling(name: &str) -> String {
    let (head, tail) = match name.rsplit_once('-') {
        Some((head, tail)) => (Some(head), tail),
        None => (None, name),
    };
    let head = head.map(|head| {
        if head.contains('*') {
            return head.to_string();
        }
        let mut parts: Vec<&str> = head.split('-').collect();
        crate::model::spelling_order(&mut parts);
        parts.join("-")
    });
    match (tail.parse::<Arch>(), head) {
        (Ok(arch), Some(head)) => format!("{head}-{arch}"),
        (Ok(arch), None) => arch.to_string(),
        (Err(()), _) => name.to_string(),
    }
}

/// Matches `text` against a glob where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(text) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
        }
    }
}

/// Resolves label patterns against the model's targets, keeping manifest order and no duplicates.
pub fn resolve(model: &Model, patterns: &[String]) -> Result<Vec<Label>, LabelError> {
    let targets = all_targets(model);
    let patterns: Vec<String> = if patterns.is_empty() {
        vec!["//...".into()]
    } else {
        patterns.to_vec()
    };
    let mut chosen = vec![false; targets.len()];
    for text in &patterns {
        let pattern = parse_pattern(text)?;
        let mut any = false;
        for (i, t) in targets.iter().enumerate() {
            if glob(&pattern.series, &t.series) && glob(&pattern.name, &t.name()) {
                chosen[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(no_match(model, &targets, text));
        }
    }
    Ok(targets
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(t, _)| t)
        .collect())
}

fn no_match(model: &Model, targets: &[Label], given: &str) -> LabelError {
    let canonical = parse_pattern(given)
        .map(|p| format!("//{}:{}", p.series, p.name))
        .unwrap_or_default();
    let mut scored: Vec<(usize, String)> = targets
        .iter()
        .map(|t| t.to_string())
        .map(|t| (strsim::levenshtein(&canonical, &t), t))
        .collect();
    scored.sort();
    let close: Vec<String> = scored
        .into_iter()
        .take(3)
        .filter(|(d, _)| *d <= 6)
        .map(|(_, t)| t)
        .collect();
    let hint = if !close.is_empty() {
        format!("did you mean {}?", close.join(", "))
    } else if model.series.is_empty() {
        "kernel.kdl declares no series yet".to_string()
    } else {
        "run `kbuild list` to see every target".to_string()
    };
    LabelError::NoMatch {
        given: given.to_string(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("dbg-*", "dbg-arm64"));
        assert!(!glob("dbg-*", "rt-dbg-arm64"));
        assert!(glob("*-arm64", "rt-dbg-arm64"));
        assert!(glob("6.6.x", "6.6.x"));
    }

    #[test]
    fn arch_spellings_normalise() {
        assert_eq!(normalise_spelling("dbg-aarch64"), "dbg-arm64");
        assert_eq!(normalise_spelling("x86_64"), "amd64");
        assert_eq!(normalise_spelling("perf-riscv"), "perf-riscv64");
        assert_eq!(normalise_spelling("dbg-*"), "dbg-*");
        assert_eq!(normalise_spelling("dbg-rt-aarch64"), "rt-dbg-arm64");
        assert_eq!(normalise_spelling("dbg-rt-*"), "dbg-rt-*");
        assert_eq!(normalise_spelling("rt-kasan-amd64"), "kasan-rt-amd64");
    }

    #[test]
    fn patterns_parse() {
        let p = parse_pattern("//6.6.x").unwrap();
        assert_eq!((p.series.as_str(), p.name.as_str()), ("6.6.x", "*"));
        let p = parse_pattern("//6.6.x/...").unwrap();
        assert_eq!(p.series, "6.6.x");
        let p = parse_pattern("6.6.x:dbg-aarch64").unwrap();
        assert_eq!(p.name, "dbg-arm64");
        assert!(parse_pattern("//6.6.x:a b").is_err());
    }
}
