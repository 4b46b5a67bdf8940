//! `kbuild patches check`: every patch is a `git format-patch` file in a unique numeric order,
//! signed off, and says where it came from when it was cherry-picked.

use std::collections::BTreeMap;
use std::path::Path;

/// One finding, at a file and line (1-based; 0 for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Checks the `*.patch` files of `dir` (workspace-relative; a missing directory has none).
pub fn check_dir(root: &Path, dir: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let files = crate::plan::patch_files(root, dir);
    let mut by_number: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for file in &files {
        let name = file.rsplit('/').next().unwrap_or(file);
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u64>() {
            Ok(n) if name[digits.len()..].starts_with('-') => by_number.entry(n).or_default().push(file),
            _ => findings.push(Finding {
                file: file.clone(),
                line: 0,
                message: "the name needs a numeric prefix that fixes the order, as `git format-patch` writes (0001-subject.patch)".into(),
            }),
        }
        match std::fs::read_to_string(root.join(file)) {
            Ok(text) => findings.extend(check_text(file, &text)),
            Err(e) => findings.push(Finding {
                file: file.clone(),
                line: 0,
                message: format!("unreadable: {e}"),
            }),
        }
    }
    for (n, same) in by_number.into_iter().filter(|(_, v)| v.len() > 1) {
        for file in same {
            findings.push(Finding {
                file: file.to_string(),
                line: 0,
                message: format!("order {n} is used by more than one patch"),
            });
        }
    }
    findings
}

/// The rules that read a patch's text.
pub fn check_text(file: &str, text: &str) -> Vec<Finding> {
    let at = |line: usize, message: &str| Finding {
        file: file.to_string(),
        line,
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
            "not a `git format-patch` file: it needs the `From <sha>` line and a `Subject:`",
        ));
    }
    if !header.iter().any(|l| l.starts_with("Signed-off-by:")) {
        findings.push(at(end.min(lines.len()).max(1), "no `Signed-off-by:` line"));
    }
    let picked = header.iter().position(|l| {
        l.contains("cherry picked from commit") || l.starts_with("(cherry-picked from")
    });
    if let Some(i) = picked {
        let sha = header[i]
            .split("commit")
            .nth(1)
            .map(|s| s.trim().trim_end_matches(')').trim());
        let ok = sha.is_some_and(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            findings.push(at(
                i + 1,
                "write a cherry-pick as `(cherry picked from commit <40 hex digits>)`",
            ));
        }
    } else if !header.iter().any(|l| l.starts_with("Origin:"))
        && !header.iter().any(|l| l.starts_with("Upstream"))
    {
        // Not a cherry-pick: it must say where it came from.
        findings.push(at(1, "no origin: add `(cherry picked from commit <sha>)` or an `Origin: <url>` line after the sign-offs"));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] x\n\nSigned-off-by: A <a@b>\nOrigin: https://lore.kernel.org/x\n---\n diff\n";

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
}
