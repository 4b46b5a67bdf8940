//! Manifest diagnostics: every problem points at its span in `kernel.kdl` and says what to do.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// One problem found in the manifest.
#[derive(Debug, Clone)]
pub struct Problem {
    pub message: String,
    pub span: SourceSpan,
    pub label: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>, span: SourceSpan, label: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            span,
            label: label.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean `x`?" when one of `known` is close to `given`, else lists `known`.
    pub fn suggest<'a>(self, given: &str, known: impl IntoIterator<Item = &'a str>) -> Problem {
        let known: Vec<&str> = known.into_iter().collect();
        match closest(given, &known) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None if known.is_empty() => self,
            None => self.help(format!("expected one of: {}", known.join(", "))),
        }
    }
}

/// The closest of `known` to `given`, if it is close enough to be a likely typo.
pub fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(given, k), *k))
        .filter(|(dist, k)| *dist <= 2.max(k.len() / 3))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, k)| k)
}

/// Every problem found while loading the manifest, rendered together against its source.
#[derive(Debug)]
pub struct ManifestError {
    pub source: Arc<NamedSource<String>>,
    pub problems: Vec<ProblemReport>,
}

/// Problems shown in full; the rest are counted. Rendering each one walks the source text, and
/// nobody reads the 35,000th.
pub const SHOWN: usize = 20;

impl ManifestError {
    pub fn new(source: Arc<NamedSource<String>>, mut problems: Vec<Problem>) -> ManifestError {
        if problems.len() > SHOWN + 1 {
            let more = problems.len() - SHOWN;
            let next = problems[SHOWN].clone();
            problems.truncate(SHOWN);
            problems.push(
                Problem::new(
                    format!("and {more} more problems, starting here: {}", next.message),
                    next.span,
                    "the next one",
                )
                .help("fix the ones above and run `kbuild check` again"),
            );
        }
        let problems = problems
            .into_iter()
            .map(|problem| ProblemReport {
                source: source.clone(),
                problem,
            })
            .collect();
        ManifestError { source, problems }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => f.write_str(&one.problem.message),
            many => write!(f, "{} problems in `{}`", many.len(), self.source.name()),
        }
    }
}

impl std::error::Error for ManifestError {}

impl Diagnostic for ManifestError {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        (self.problems.len() == 1).then_some(self.source.as_ref() as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self.problems.as_slice() {
            [one] => one.labels(),
            _ => None,
        }
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self.problems.as_slice() {
            [one] => one.help(),
            _ => None,
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.problems.len() < 2 {
            return None;
        }
        Some(Box::new(self.problems.iter().map(|p| p as &dyn Diagnostic)))
    }
}

/// A problem bound to the manifest source so that it renders on its own.
#[derive(Debug)]
pub struct ProblemReport {
    source: Arc<NamedSource<String>>,
    pub problem: Problem,
}

impl fmt::Display for ProblemReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for ProblemReport {}

impl Diagnostic for ProblemReport {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = LabeledSpan::new_with_span(Some(self.problem.label.clone()), self.problem.span);
        Some(Box::new(std::iter::once(label)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("dgb", &["dbg", "rt"]), Some("dbg"));
        assert_eq!(closest("version", &["versoin", "source"]), Some("versoin"));
        assert_eq!(closest("zzzzzz", &["dbg", "rt"]), None);
    }
}
