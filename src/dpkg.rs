//! What Debian's package database knows about a file: the package that installed it, that
//! package's version, and whether the file is still what the package installed
//! (`dpkg --verify` compares it with the MD5 sum dpkg recorded at installation).
//!
//! On a machine without dpkg every answer is "unknown", never an error: callers fall back to
//! trusting a file on first use.

use std::path::Path;
use std::process::Command;

/// The output of a dpkg command that ran, or `None` where dpkg is not installed.
fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
}

/// Whether this machine has a dpkg database to ask.
pub fn available() -> bool {
    run("dpkg-query", &["--version"]).is_some_and(|o| o.status.success())
}

/// The installed version of `package` (`6.1.192-3`), or `None` when it is not installed or dpkg
/// is absent.
pub fn installed_version(package: &str) -> Option<String> {
    let out = run(
        "dpkg-query",
        &["-W", "-f=${db:Status-Status}\t${Version}", package],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_once('\t') {
        Some(("installed", version)) if out.status.success() => Some(version.trim().to_string()),
        _ => None,
    }
}

/// The packages that installed `path` (usually one), empty when none did or dpkg is absent.
pub fn owners(path: &Path) -> Vec<String> {
    let Some(out) = run("dpkg-query", &["-S", &path.to_string_lossy()]) else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    // `linux-source-6.1: /usr/src/linux-source-6.1.tar.xz`; diversions are listed otherwise.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .flat_map(|(packages, _)| packages.split(", "))
        .map(|p| p.split(':').next().unwrap_or(p).trim().to_string())
        .filter(|p| !p.is_empty() && !p.starts_with("diversion by"))
        .collect()
}

/// What dpkg says of one file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The file is the one the installed package put there.
    Intact,
    /// The file's content differs from what the package installed, or it is gone.
    Modified,
    /// dpkg does not list the file as the package's: `owners` says who installed it.
    NotOwned { owners: Vec<String> },
    /// No dpkg on this machine.
    Unknown,
}

/// Checks `path` against what `package` installed.
pub fn verify(package: &str, path: &Path) -> Verdict {
    if !available() {
        return Verdict::Unknown;
    }
    let owners = owners(path);
    if !owners.iter().any(|o| o == package) {
        return Verdict::NotOwned { owners };
    }
    let Some(out) = run("dpkg", &["--verify", package]) else {
        return Verdict::Unknown;
    };
    modified_in(&String::from_utf8_lossy(&out.stdout), path)
}

/// Reads `dpkg --verify` output: `??5?????? c /etc/x`, `missing   /usr/x`; silence is intact.
fn modified_in(report: &str, path: &Path) -> Verdict {
    let path = path.to_string_lossy();
    for line in report.lines() {
        let mut fields = line.split_whitespace();
        let (Some(flags), Some(file)) = (fields.next(), fields.next_back()) else {
            continue;
        };
        if file != path {
            continue;
        }
        if flags == "missing" || flags.as_bytes().get(2) == Some(&b'5') {
            return Verdict::Modified;
        }
    }
    Verdict::Intact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verify_reports() {
        let path = Path::new("/usr/src/linux-source-6.1.tar.xz");
        assert_eq!(modified_in("", path), Verdict::Intact);
        assert_eq!(
            modified_in("??5??????   /usr/src/linux-source-6.1.tar.xz\n", path),
            Verdict::Modified
        );
        assert_eq!(
            modified_in("missing     /usr/src/linux-source-6.1.tar.xz\n", path),
            Verdict::Modified
        );
        // Another file of the package, or only its mode changed: not this file's content.
        assert_eq!(
            modified_in(
                "??5?????? c /etc/other\n?M???????   /usr/src/linux-source-6.1.tar.xz\n",
                path
            ),
            Verdict::Intact
        );
    }
}
