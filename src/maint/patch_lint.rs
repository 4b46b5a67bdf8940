//! `kbuild patches check`: every patch is a `git format-patch` file in a unique numeric order,
//! signed off, with a diff, and says where it came from.
//!
//! Findings are errors or advice. An error is a patch the series cannot rely on: no order, an
//! order used twice, no diff, not a `git format-patch` file or not signed off (LinuxKit's own
//! rules for its patches). Where a patch came from is advice: LinuxKit's own trees carry
//! hundreds of patches without an `Origin:`, and they build.

use std::collections::BTreeMap;
use std::path::Path;

/// Whether a finding fails a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Advice,
}

/// One finding, at a file and line (1-based; 0 for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Advice => "advice",
        };
        write!(f, "{}:{}: {what}: {}", self.file, self.line, self.message)
    }
}

/// How many findings are errors and how many advice.
pub fn count(findings: &[Finding]) -> (usize, usize) {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    (errors, findings.len() - errors)
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a header line says where the patch came from: an `Origin:` line, or the stable
/// trees' `[ Upstream commit <sha> ]` and `commit <sha> upstream.`
pub fn names_origin(line: &str) -> bool {
    if line.starts_with("Origin:") || line.starts_with("Link:") {
        return true;
    }
    let words: Vec<&str> = line
        .trim_matches(|c| c == '[' || c == ']' || c == ' ')
        .split_whitespace()
        .collect();
    match words.as_slice() {
        ["Upstream", "commit", sha] => is_sha(sha),
        ["commit", sha, "upstream."] => is_sha(sha),
        _ => false,
    }
}

/// Checks the `*.patch` files of `dir` (workspace-relative; a missing directory has none).
pub fn check_dir(root: &Path, dir: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let files = match crate::plan::patch_files(root, dir) {
        Ok(files) => files,
        Err(e) => {
            findings.push(Finding {
                file: dir.to_string(),
                line: 0,
                severity: Severity::Error,
                message: e.to_string(),
            });
            return findings;
        }
    };
    let mut by_number: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for file in &files {
        let name = file.rsplit('/').next().unwrap_or(file);
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u64>() {
            Ok(n) if name[digits.len()..].starts_with('-') => by_number.entry(n).or_default().push(file),
            _ => findings.push(Finding {
                file: file.clone(),
                line: 0,
                severity: Severity::Error,
                message: "the name needs a numeric prefix that fixes the order, as `git format-patch` writes (0001-subject.patch)".into(),
            }),
        }
        // A patch is bytes (GNU patch applies one with a Latin-1 name in it): the rules read only
        // ASCII markers, so the text is taken as it is, any other byte replaced.
        match std::fs::read(root.join(file)) {
            Ok(bytes) => findings.extend(check_text(file, &String::from_utf8_lossy(&bytes))),
            Err(e) => findings.push(Finding {
                file: file.clone(),
                line: 0,
                severity: Severity::Error,
                message: format!("unreadable: {e}"),
            }),
        }
    }
    for (n, same) in by_number.into_iter().filter(|(_, v)| v.len() > 1) {
        for file in same {
            findings.push(Finding {
                file: file.to_string(),
                line: 0,
                severity: Severity::Error,
                message: format!("order {n} is used by more than one patch"),
            });
        }
    }
    findings
}

/// The rules that read a patch's text.
pub fn check_text(file: &str, text: &str) -> Vec<Finding> {
    let at = |line: usize, severity: Severity, message: &str| Finding {
        file: file.to_string(),
        line,
        severity,
        message: message.to_string(),
    };
    let mut findings = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // The header ends at the `---` line before the diffstat, or at the first diff.
    let end = lines
        .iter()
        .position(|l| *l == "---" || l.starts_with("diff --git"))
        .unwrap_or(lines.len());
    let header = &lines[..end];
    if !lines.first().is_some_and(|l| l.starts_with("From "))
        || !header.iter().any(|l| l.starts_with("Subject:"))
    {
        findings.push(at(
            1,
            Severity::Error,
            "not a `git format-patch` file: it needs the `From <sha>` line and a `Subject:`",
        ));
    }
    if !header.iter().any(|l| l.starts_with("Signed-off-by:")) {
        findings.push(at(
            end.min(lines.len()).max(1),
            Severity::Error,
            "no `Signed-off-by:` line",
        ));
    }
    let diffs = lines.iter().any(|l| l.starts_with("diff --git"))
        || lines
            .windows(2)
            .any(|w| w[0].starts_with("--- ") && w[1].starts_with("+++ "));
    if !diffs {
        findings.push(at(
            1,
            Severity::Error,
            "no diff: the patch changes no file (an empty or truncated patch?)",
        ));
    }
    // `patch -p1`, which the patch action runs, applies text diffs only.
    let binary = lines.iter().position(|l| {
        *l == "GIT binary patch" || (l.starts_with("Binary files ") && l.ends_with(" differ"))
    });
    if let Some(i) = binary {
        findings.push(at(
            i + 1,
            Severity::Error,
            "a binary diff, which `patch -p1` (the patch action) cannot apply: change the file with a text diff, or carry the binary file another way",
        ));
    }
    let picked = header.iter().position(|l| {
        l.contains("cherry picked from commit") || l.starts_with("(cherry-picked from")
    });
    if let Some(i) = picked {
        let sha = header[i]
            .split("commit")
            .nth(1)
            .map(|s| s.trim().trim_end_matches(')').trim());
        if !sha.is_some_and(is_sha) {
            findings.push(at(
                i + 1,
                Severity::Advice,
                "write a cherry-pick as `(cherry picked from commit <40 hex digits>)`",
            ));
        }
    } else if !header.iter().any(|l| names_origin(l)) {
        // Not a cherry-pick: it should say where it came from.
        findings.push(at(1, Severity::Advice, "no origin: add `(cherry picked from commit <sha>)` or an `Origin: <url>` line after the sign-offs"));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] x\n\nSigned-off-by: A <a@b>\nOrigin: https://lore.kernel.org/x\n---\n a | 1 +\n\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -0,0 +1 @@\n+x\n";

    #[test]
    fn a_good_patch_passes() {
        assert!(check_text("p", GOOD).is_empty());
    }

    #[test]
    fn each_rule_is_reported_with_its_line() {
        let unsigned = GOOD.replace("Signed-off-by: A <a@b>\n", "");
        assert!(
            check_text("p", &unsigned)
                .iter()
                .any(|f| f.message.contains("Signed-off-by"))
        );
        let bad_pick = GOOD.replace(
            "Origin: https://lore.kernel.org/x",
            "(cherry picked from commit abc)",
        );
        let f = check_text("p", &bad_pick);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 6);
        let good_pick = GOOD.replace(
            "Origin: https://lore.kernel.org/x",
            &format!("(cherry picked from commit {})", "a".repeat(40)),
        );
        assert!(check_text("p", &good_pick).is_empty());
        let no_origin = GOOD.replace("Origin: https://lore.kernel.org/x\n", "");
        assert!(
            check_text("p", &no_origin)
                .iter()
                .any(|f| f.message.contains("no origin"))
        );
        assert!(
            check_text("p", "just text\n")
                .iter()
                .any(|f| f.message.contains("format-patch"))
        );
    }

    #[test]
    fn origins_are_the_known_forms_only() {
        let sha = "b".repeat(40);
        let with = |line: &str| {
            check_text(
                "p",
                &GOOD.replace("Origin: https://lore.kernel.org/x", line),
            )
            .iter()
            .any(|f| f.message.contains("no origin"))
        };
        assert!(!with(&format!("[ Upstream commit {sha} ]")));
        assert!(!with(&format!("commit {sha} upstream.")));
        assert!(with("Upstream is where this should go"));
        assert!(with("Upstream-Status: Pending"));
        let f = check_text(
            "p",
            &GOOD.replace("Origin: https://lore.kernel.org/x\n", ""),
        );
        assert_eq!(count(&f), (0, 1), "a missing origin is advice");
    }

    #[test]
    fn a_binary_diff_is_an_error_and_a_link_is_an_origin() {
        let binary = GOOD.replace(
            "--- a/a\n+++ b/a\n@@ -0,0 +1 @@\n+x\n",
            "index 0000000..1111111 100644\nGIT binary patch\nliteral 4\nLcmZ?d00001\n",
        );
        let found = check_text("0001-x.patch", &binary);
        assert!(
            found
                .iter()
                .any(|f| f.severity == Severity::Error && f.message.contains("binary diff")),
            "{found:?}"
        );
        let linked = GOOD.replace(
            "Origin: https://lore.kernel.org/x",
            "Link: https://lore.kernel.org/x",
        );
        assert!(check_text("0001-x.patch", &linked).is_empty());
    }

    #[test]
    fn a_patch_without_a_diff_is_an_error() {
        let empty = &GOOD[..GOOD.find("---").unwrap()];
        let f = check_text("p", empty);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].to_string().contains("error: no diff"), "{}", f[0]);
    }
}
