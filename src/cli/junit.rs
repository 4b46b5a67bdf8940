//! JUnit XML, as GitLab, GitHub and Jenkins read test reports: one `testsuite` per target, one
//! `testcase` per check and per KUnit case (`classname` the target, or the target and the
//! KUnit suite), a failure's console excerpt in its `failure` element.

use std::fmt::Write as _;

use crate::ktap;
use crate::verdict::{Outcome, Tested, Verdict};

/// One testcase: its class, name, and how it ended.
struct Case {
    class: String,
    name: String,
    end: End,
}

enum End {
    Passed,
    Failed { message: String, text: String },
    Error { message: String, text: String },
    Skipped { message: String },
}

fn cases_of(test: &Tested) -> Vec<Case> {
    let case = |class: &str, name: &str, end| Case {
        class: class.to_string(),
        name: name.to_string(),
        end,
    };
    match &test.outcome {
        Outcome::Passed { verdict, .. } => verdict_cases(&test.target, verdict, ""),
        Outcome::Failed { verdict, log } => verdict_cases(&test.target, verdict, log),
        Outcome::Infrastructure { error, log } => vec![case(
            &test.target,
            "boot",
            End::Error {
                message: error.clone(),
                text: log.clone(),
            },
        )],
    }
}

/// The checks, then each KUnit case; the console excerpt goes with the first failure.
fn verdict_cases(target: &str, verdict: &Verdict, log: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut excerpt = Some(log.to_string()).filter(|l| !l.is_empty());
    let mut failed = |message: String, detail: &str| End::Failed {
        message,
        text: match excerpt.take() {
            Some(log) if detail.is_empty() => log,
            Some(log) => format!("{detail}\n\n{log}"),
            None => detail.to_string(),
        },
    };
    if let Some(panic) = &verdict.panic {
        cases.push(Case {
            class: target.to_string(),
            name: "no panic".into(),
            end: failed(panic.clone(), ""),
        });
    }
    for check in &verdict.checks {
        let end = if check.passed {
            End::Passed
        } else {
            failed(check.detail.clone(), "")
        };
        cases.push(Case {
            class: target.to_string(),
            name: check.name.clone(),
            end,
        });
    }
    for suite in &verdict.kunit {
        let class = format!("{target}.kunit.{}", suite.name);
        for case in &suite.cases {
            let end = match case.outcome {
                ktap::Outcome::Pass => End::Passed,
                // The directive (`# SKIP why`) is the reason; the lines before it are the case's.
                ktap::Outcome::Skip => End::Skipped {
                    message: case.detail.lines().last().unwrap_or_default().to_string(),
                },
                ktap::Outcome::Fail => failed(format!("{} failed", case.name), &case.detail),
            };
            cases.push(Case {
                class: class.clone(),
                name: case.name.clone(),
                end,
            });
        }
        if suite.outcome.is_none() {
            cases.push(Case {
                class,
                name: "(suite finished)".into(),
                end: failed(format!("KUnit suite {} never finished", suite.name), ""),
            });
        }
    }
    cases
}

/// The whole report.
pub fn render(tests: &[Tested]) -> String {
    let mut suites = String::new();
    let mut totals = [0usize; 4];
    for test in tests {
        let cases = cases_of(test);
        let counts = counts(&cases);
        for (total, n) in totals.iter_mut().zip(counts) {
            *total += n;
        }
        let [n, failures, errors, skipped] = counts;
        let _ = writeln!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">",
            escape(&test.target),
            test.seconds
        );
        for case in &cases {
            suites.push_str(&case_xml(case));
        }
        suites.push_str("  </testsuite>\n");
    }
    let [n, failures, errors, skipped] = totals;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kbuild test\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{suites}</testsuites>\n"
    )
}

/// (tests, failures, errors, skipped).
fn counts(cases: &[Case]) -> [usize; 4] {
    let mut counts = [cases.len(), 0, 0, 0];
    for case in cases {
        match case.end {
            End::Passed => {}
            End::Failed { .. } => counts[1] += 1,
            End::Error { .. } => counts[2] += 1,
            End::Skipped { .. } => counts[3] += 1,
        }
    }
    counts
}

fn case_xml(case: &Case) -> String {
    let open = format!(
        "    <testcase classname=\"{}\" name=\"{}\"",
        escape(&case.class),
        escape(&case.name)
    );
    match &case.end {
        End::Passed => format!("{open}/>\n"),
        End::Skipped { message } => {
            format!(
                "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                escape(message)
            )
        }
        End::Failed { message, text } | End::Error { message, text } => {
            let tag = if matches!(case.end, End::Failed { .. }) {
                "failure"
            } else {
                "error"
            };
            format!(
                "{open}>\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>\n",
                escape(message),
                escape(text)
            )
        }
    }
}

/// Text as XML 1.0 allows it: markup escaped, and the control characters a console carries
/// (escape sequences, NULs), which no XML document may hold, shown as `\u{..}`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            '\r' => {}
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::{Case as KCase, Suite};

    #[test]
    fn checks_and_kunit_cases_become_testcases_and_markup_is_escaped() {
        let mut verdict = Verdict::default();
        verdict.check("boot", true, "init runs");
        verdict.check("load a<b>.ko", false, "\"No such file\" & \x1b[0m");
        verdict.kunit.push(Suite {
            name: "example".into(),
            outcome: Some(ktap::Outcome::Pass),
            cases: vec![
                KCase {
                    name: "example_simple_test".into(),
                    outcome: ktap::Outcome::Pass,
                    detail: String::new(),
                },
                KCase {
                    name: "example_skip_test".into(),
                    outcome: ktap::Outcome::Skip,
                    detail: "# SKIP this test should be skipped".into(),
                },
            ],
        });
        let tests = vec![Tested {
            target: "//6.1.x:amd64".into(),
            outcome: Outcome::Failed {
                verdict,
                log: "console <tail>".into(),
            },
            seconds: 2.5,
        }];
        let xml = render(&tests);
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("classname=\"//6.1.x:amd64.kunit.example\" name=\"example_simple_test\"")
        );
        assert!(xml.contains("name=\"load a&lt;b&gt;.ko\""));
        assert!(xml.contains("message=\"&quot;No such file&quot; &amp; \\u{1b}[0m\""));
        assert!(xml.contains(">console &lt;tail&gt;</failure>"));
        assert!(!xml.contains('\x1b'));
    }
}
