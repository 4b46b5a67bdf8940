//! KTAP, the kernel's test output (Documentation/dev-tools/ktap.rst), read from a serial console:
//! KUnit prints one subtest per suite, its cases one level in, and the suite's own result line.
//! Console lines may carry printk timestamps and carriage returns, and kernel messages may sit
//! between the lines of a suite; whatever is not KTAP is skipped.

use serde::{Deserialize, Serialize};

/// How one case (or suite) ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
    /// The directive's text (`# SKIP reason`) and the diagnostic lines printed before the
    /// result, which is where KUnit says what an expectation saw.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Suite {
    pub name: String,
    /// The suite's own result line; `None` when the console ended inside the suite (a crash).
    pub outcome: Option<Outcome>,
    pub cases: Vec<Case>,
}

/// The text of a console line without its carriage return and printk timestamp (`[    1.23] `).
fn strip(line: &str) -> &str {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix('[')
        && let Some((stamp, after)) = rest.split_once("] ")
        && stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return after;
    }
    line
}

/// `ok 1 - name # SKIP why` or `not ok 2 name`: the outcome, the name and the directive.
fn result_line(text: &str) -> Option<(Outcome, String, String)> {
    let (failed, rest) = match text.strip_prefix("not ok ") {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix("ok ")?),
    };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    number.parse::<u64>().ok()?;
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest.split_once(" # ") {
        Some((name, directive)) => (name, directive.trim()),
        None => (rest, ""),
    };
    let skipped = directive
        .get(..4)
        .is_some_and(|d| d.eq_ignore_ascii_case("skip"));
    let outcome = match (failed, skipped) {
        (_, true) => Outcome::Skip,
        (true, false) => Outcome::Fail,
        (false, false) => Outcome::Pass,
    };
    Some((outcome, name.trim().to_string(), directive.to_string()))
}

/// The suites of `console`, in the order they ran.
pub fn suites(console: &str) -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    // The suite being read, and the diagnostics seen since the last case.
    let mut open: Option<Suite> = None;
    let mut notes: Vec<String> = Vec::new();
    for raw in console.lines() {
        let line = strip(raw);
        let text = line.trim_start();
        let depth = (line.len() - text.len()) / 4;
        if let Some(name) = text.strip_prefix("# Subtest: ") {
            if depth == 1 {
                if let Some(unfinished) = open.take() {
                    suites.push(unfinished);
                }
                open = Some(Suite {
                    name: name.trim().to_string(),
                    outcome: None,
                    cases: Vec::new(),
                });
                notes.clear();
            }
            continue;
        }
        if let Some((outcome, name, directive)) = result_line(text) {
            match (depth, open.as_mut()) {
                (1, Some(suite)) => {
                    let mut detail = std::mem::take(&mut notes);
                    if !directive.is_empty() {
                        detail.push(format!("# {directive}"));
                    }
                    suite.cases.push(Case {
                        name,
                        outcome,
                        detail: detail.join("\n"),
                    });
                }
                (0, Some(suite)) if suite.name == name => {
                    let mut suite = open.take().expect("matched as open");
                    suite.outcome = Some(outcome);
                    suites.push(suite);
                }
                _ => {}
            }
            continue;
        }
        // A diagnostic of the suite's cases (two levels in: a case's own output).
        if open.is_some() && depth >= 1 && text.starts_with('#') {
            notes.push(text.to_string());
        }
    }
    suites.extend(open);
    suites
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KUnit's example suite loaded as a module on 6.1, as a serial console shows it.
    const CONSOLE: &str = "\
[    0.912345] kbuild-test: module /lib/modules/kunit.ko ok\r
KTAP version 1\r
1..1\r
    KTAP version 1\r
    # Subtest: example\r
    1..3\r
    # example_simple_test: initializing\r
    ok 1 - example_simple_test\r
[    1.000001] random: crng init done\r
    # example_skip_test: initializing\r
    ok 2 - example_skip_test # SKIP this test should be skipped\r
    # example_fail_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:30\r
    Expected 1 == 2, but\r
    not ok 3 - example_fail_test\r
        KTAP version 1\r
        # Subtest: example_params_test\r
        ok 1 - example value 3\r
    ok 4 - example_params_test\r
# example: pass:2 fail:1 skip:1 total:4\r
not ok 1 - example\r
";

    #[test]
    fn reads_suites_and_cases_through_timestamps_and_kernel_messages() {
        let suites = suites(CONSOLE);
        assert_eq!(suites.len(), 1);
        let suite = &suites[0];
        assert_eq!(suite.name, "example");
        assert_eq!(suite.outcome, Some(Outcome::Fail));
        let cases: Vec<(&str, Outcome)> = suite
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.outcome))
            .collect();
        assert_eq!(
            cases,
            [
                ("example_simple_test", Outcome::Pass),
                ("example_skip_test", Outcome::Skip),
                ("example_fail_test", Outcome::Fail),
                ("example_params_test", Outcome::Pass),
            ]
        );
        assert!(
            suite.cases[1]
                .detail
                .contains("SKIP this test should be skipped")
        );
        assert!(suite.cases[2].detail.contains("EXPECTATION FAILED"));
    }

    #[test]
    fn newer_result_lines_without_a_dash_and_a_crash_inside_a_suite() {
        let console = "    # Subtest: list-kunit-test\n    1..2\n    ok 1 list_test_list_init\n    not ok 2 list_test_list_add\nKernel panic - not syncing: oops\n";
        let suites = suites(console);
        assert_eq!(suites.len(), 1);
        assert_eq!(suites[0].outcome, None);
        assert_eq!(suites[0].cases[0].name, "list_test_list_init");
        assert_eq!(suites[0].cases[1].outcome, Outcome::Fail);
    }

    #[test]
    fn text_that_is_not_ktap_gives_nothing() {
        assert!(
            suites("ok 1 - nothing open\nLinux version 6.1\n# Subtest: top level\n").is_empty()
        );
    }
}
