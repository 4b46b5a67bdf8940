//! What a test action found, check by check: the record its recipe writes as `result.json`
//! beside the console log, and that `kbuild test` reads back (from the cache, for a cached
//! pass) for its summary and the JUnit file; and how each target's test ended.

use serde::{Deserialize, Serialize};

use crate::ktap::{self, Suite};

/// The file name of the record in a test action's output.
pub const RESULT: &str = "result.json";
/// The file name of the serial console's log in a test action's output.
pub const CONSOLE: &str = "console.log";

/// One check of a test: the config's needs, the boot, the release, a mount, a module.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was seen, or what went wrong.
    pub detail: String,
}

/// Everything one test action found.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub kunit: Vec<Suite>,
    /// The kernel panicked: the panic line, whose console log shows the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<String>,
}

impl Verdict {
    pub fn check(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// Whether every check passed, no KUnit case or suite failed and nothing panicked.
    pub fn passed(&self) -> bool {
        self.panic.is_none()
            && self.checks.iter().all(|c| c.passed)
            && self.kunit.iter().all(|s| {
                s.outcome.is_some()
                    && s.outcome != Some(ktap::Outcome::Fail)
                    && s.cases.iter().all(|c| c.outcome != ktap::Outcome::Fail)
            })
    }

    /// The first thing that failed, in words, for the error of a failed test.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(panic) = &self.panic {
            return Some(format!("the kernel panicked: {panic}"));
        }
        if let Some(check) = self.checks.iter().find(|c| !c.passed) {
            return Some(format!("{}: {}", check.name, check.detail));
        }
        for suite in &self.kunit {
            if let Some(case) = suite
                .cases
                .iter()
                .find(|c| c.outcome == ktap::Outcome::Fail)
            {
                return Some(format!("KUnit {}.{} failed", suite.name, case.name));
            }
            if suite.outcome.is_none() {
                return Some(format!("KUnit suite {} never finished", suite.name));
            }
            if suite.outcome == Some(ktap::Outcome::Fail) {
                return Some(format!("KUnit suite {} failed", suite.name));
            }
        }
        None
    }

    /// (passed, failed, skipped) over the checks and KUnit cases.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for check in &self.checks {
            if check.passed {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        for case in self.kunit.iter().flat_map(|s| &s.cases) {
            match case.outcome {
                ktap::Outcome::Pass => counts.0 += 1,
                ktap::Outcome::Fail => counts.1 += 1,
                ktap::Outcome::Skip => counts.2 += 1,
            }
        }
        counts
    }
}

/// How one test ended.
pub enum Outcome {
    /// Passed: `cached` when no boot was needed.
    Passed { verdict: Verdict, cached: bool },
    /// The kernel failed the test; the log holds its console.
    Failed { verdict: Verdict, log: String },
    /// The test could not say: qemu missing, a build failure, a machine that timed out.
    Infrastructure { error: String, log: String },
}

/// One target's test.
pub struct Tested {
    pub target: String,
    pub outcome: Outcome,
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::Case;

    #[test]
    fn a_failed_case_or_an_unfinished_suite_fails_the_verdict() {
        let mut v = Verdict::default();
        v.check("boot", true, "reached init");
        assert!(v.passed());
        v.kunit.push(Suite {
            name: "example".into(),
            outcome: Some(ktap::Outcome::Pass),
            cases: vec![Case {
                name: "skips".into(),
                outcome: ktap::Outcome::Skip,
                detail: String::new(),
            }],
        });
        assert!(v.passed());
        assert_eq!(v.counts(), (1, 0, 1));
        v.kunit[0].outcome = None;
        assert!(!v.passed());
        assert_eq!(
            v.first_failure().unwrap(),
            "KUnit suite example never finished"
        );
        v.kunit[0].outcome = Some(ktap::Outcome::Pass);
        v.check("release", false, "saw 6.1.0");
        assert_eq!(v.first_failure().unwrap(), "release: saw 6.1.0");
        v.panic = Some("Kernel panic - not syncing: VFS".into());
        assert!(
            v.first_failure()
                .unwrap()
                .starts_with("the kernel panicked")
        );
    }
}
