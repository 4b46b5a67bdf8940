//! `kbuild test`: builds the targets with a boot test each, then says how the tests went, in a
//! summary line, optionally a JUnit file, and an exit code `git bisect run` understands.

use std::fmt::Write as _;
use std::path::Path;

use super::{Format, Workspace, junit, render, views};
use crate::build::Built;
use crate::cache::Cache;
use crate::engine::Status;
use crate::kind::ActionKind;
use crate::verdict::{Outcome, RESULT, Tested, Verdict};

/// `kbuild test` (and `kbuild run --test`): build, test, summarise, write JUnit, exit.
pub(crate) fn command(
    ws: &Workspace,
    labels: &[String],
    (jobs, keep_going, locked): (usize, bool, bool),
    (format, views, junit): (Format, &views::Views, Option<&Path>),
) -> miette::Result<i32> {
    let cache = super::open_cache(ws)?;
    ws.remote.settings(&ws.root)?;
    // A null test run, as a null build: the last run's record shows every test passed and
    // nothing it depended on changed. The JUnit file needs each result: the full path.
    let null = (labels, crate::plan::Goal::Test);
    if format == Format::Text && junit.is_none() && super::null_build(ws, &cache, null)? {
        return Ok(0);
    }
    let (json, settings) = (format == Format::Json, (jobs, keep_going, locked));
    super::build_then(
        ws,
        &cache,
        null,
        settings,
        (json, views),
        |request, built| {
            render::run(&built, request.remote.as_deref(), format);
            let tests = results(&built, &cache);
            eprint!("{}", summary(&tests));
            if let Some(path) = junit {
                write_junit(path, &tests)?;
            }
            let code = if request.cancel.is_cancelled() {
                request.cancel.exit_code()
            } else {
                exit_code(&tests, built.failed)
            };
            std::mem::forget(built);
            Ok(code)
        },
    )
}

/// The tests of a build, in graph order.
pub fn results(built: &Built, cache: &Cache) -> Vec<Tested> {
    let graph = &built.graph;
    graph
        .ids()
        .filter(|&id| graph.action(id).kind() == ActionKind::Test)
        .map(|id| {
            let action = graph.action(id);
            let status = &built.report.status[id.index()];
            let target = action.name.strip_prefix("test ").unwrap_or(&action.name);
            let seconds = match status {
                Status::Executed { seconds, .. } => *seconds,
                _ => 0.0,
            };
            Tested {
                target: target.to_string(),
                outcome: outcome(status, cache),
                seconds,
            }
        })
        .collect()
}

fn outcome(status: &Status, cache: &Cache) -> Outcome {
    match status {
        Status::Cached { key, .. } | Status::Executed { key, .. } | Status::Remote { key, .. } => {
            match read_result(cache, *key) {
                Ok(verdict) => Outcome::Passed {
                    verdict,
                    cached: !matches!(status, Status::Executed { .. }),
                },
                Err(error) => Outcome::Infrastructure {
                    error,
                    log: String::new(),
                },
            }
        }
        Status::Failed {
            error,
            log,
            findings,
            ..
        } => {
            let log = tail(log, 80);
            match findings.as_deref().map(serde_json::from_str::<Verdict>) {
                Some(Ok(verdict)) => Outcome::Failed { verdict, log },
                _ => Outcome::Infrastructure {
                    error: error.clone(),
                    log,
                },
            }
        }
        _ => Outcome::Infrastructure {
            error: "not run: something it needs failed (see above), or the run was stopped".into(),
            log: String::new(),
        },
    }
}

/// The verdict a passed test stored.
fn read_result(cache: &Cache, key: crate::key::ActionKey) -> Result<Verdict, String> {
    let bytes = cache.read_output(key, RESULT)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the test's result is unreadable: {e}"))
}

/// The last `lines` lines of a log, for a failure's excerpt.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One line per test, then `12 tests: 10 passed (8 cached), 1 failed, 1 infrastructure
/// error`.
pub fn summary(tests: &[Tested]) -> String {
    let (mut passed, mut cached, mut failed, mut infra) = (0, 0, 0, 0);
    let mut lines = String::new();
    for test in tests {
        match &test.outcome {
            Outcome::Passed { verdict, cached: c } => {
                passed += 1;
                cached += usize::from(*c);
                let (ok, _, skipped) = verdict.counts();
                let how = if *c { ", cached" } else { "" };
                let _ = writeln!(
                    lines,
                    "  pass {}: {ok} checks passed, {skipped} skipped{how}",
                    test.target
                );
            }
            Outcome::Failed { verdict, .. } => {
                failed += 1;
                let why = verdict.first_failure().unwrap_or_default();
                let _ = writeln!(lines, "  FAIL {}: {why}", test.target);
            }
            Outcome::Infrastructure { error, .. } => {
                infra += 1;
                let _ = writeln!(lines, "  ERROR {}: {error}", test.target);
            }
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{lines}{}: {passed} passed ({cached} cached), {failed} failed, {}\n",
        plural(tests.len(), "test", "tests"),
        plural(infra, "infrastructure error", "infrastructure errors"),
    )
}

/// The summary of a null test run: every test passed before, and nothing changed since.
pub fn all_cached(tests: usize) -> String {
    let noun = if tests == 1 { "test" } else { "tests" };
    format!("{tests} {noun}: {tests} passed ({tests} cached), 0 failed, 0 infrastructure errors")
}

/// 0 when every test passed; 1 when a kernel failed one (`git bisect run` marks it bad); 125
/// when some test could not say (bisect skips the commit).
pub fn exit_code(tests: &[Tested], build_failed: bool) -> i32 {
    if tests
        .iter()
        .any(|t| matches!(t.outcome, Outcome::Failed { .. }))
    {
        1
    } else if build_failed
        || tests
            .iter()
            .any(|t| matches!(t.outcome, Outcome::Infrastructure { .. }))
    {
        125
    } else {
        0
    }
}

/// Writes the JUnit file.
pub fn write_junit(path: &Path, tests: &[Tested]) -> miette::Result<()> {
    std::fs::write(path, junit::render(tests)).map_err(|e| {
        miette::miette!(
            help = "give --junit a path in a directory you can write to",
            "cannot write {}: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tested(outcome: Outcome) -> Tested {
        Tested {
            target: "//6.1.x:amd64".into(),
            outcome,
            seconds: 1.0,
        }
    }

    #[test]
    fn the_summary_and_the_exit_code_tell_a_failure_from_an_infrastructure_error() {
        let passed = || {
            tested(Outcome::Passed {
                verdict: Verdict::default(),
                cached: true,
            })
        };
        let mut failed = Verdict::default();
        failed.check("boot", false, "never ran /init");
        let tests = vec![
            passed(),
            tested(Outcome::Failed {
                verdict: failed,
                log: String::new(),
            }),
            tested(Outcome::Infrastructure {
                error: "cannot run qemu-system-x86_64".into(),
                log: String::new(),
            }),
        ];
        let text = summary(&tests);
        assert!(
            text.ends_with("3 tests: 1 passed (1 cached), 1 failed, 1 infrastructure error\n"),
            "{text}"
        );
        assert!(text.contains("FAIL //6.1.x:amd64: boot: never ran /init"));
        assert!(text.contains("  pass //6.1.x:amd64: 0 checks passed, 0 skipped, cached\n"));
        assert_eq!(exit_code(&tests, false), 1);
        assert_eq!(exit_code(&tests[2..], false), 125);
        assert_eq!(exit_code(&tests[..1], false), 0);
        assert_eq!(exit_code(&tests[..1], true), 125);
    }
}
