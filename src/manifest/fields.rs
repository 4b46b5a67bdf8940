//! Readers of the small things series, variants and tools all declare: names, `arch=`, and the
//! collecting of problems so that one read reports them all.

use std::collections::HashSet;

use kdl::KdlNode;

use super::diag::Problem;
use super::nodes::{self, Spanned};
use crate::arch::Arch;

/// Variant and tool names declared so far.
#[derive(Default)]
pub(super) struct Names {
    pub(super) variants: HashSet<String>,
    pub(super) tools: HashSet<String>,
}

/// Runs `f`, recording its problem instead of propagating it.
pub(super) fn record<T>(problems: &mut Vec<Problem>, result: Result<T, Problem>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

/// The optional `arch=` of a node that applies to every arch or to one; no other property.
pub(super) fn arch_prop(node: &KdlNode) -> Result<Option<Arch>, Problem> {
    let mut problems = Vec::new();
    nodes::check_props(node, &["arch"], &mut problems);
    if let Some(problem) = problems.pop() {
        return Err(problem);
    }
    nodes::string_prop(node, "arch")?
        .map(|a| parse_arch(&a))
        .transpose()
}

/// Variant and tool names appear inside labels, where `-` separates parts.
pub(super) fn check_simple_name(id: &Spanned, what: &str) -> Result<(), Problem> {
    let ok = !id.value.is_empty()
        && id
            .value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let is_arch = id.value.parse::<Arch>().is_ok();
    if ok && !is_arch {
        return Ok(());
    }
    Err(Problem::new(
        format!("`{}` is not a valid {what} name", id.value),
        id.span,
        "invalid name",
    )
    .help("use lowercase letters and digits only, and not an architecture name"))
}

pub(super) fn parse_arch(s: &Spanned) -> Result<Arch, Problem> {
    s.value.parse().map_err(|()| {
        Problem::new(
            format!("unknown architecture `{}`", s.value),
            s.span,
            "not an architecture",
        )
        .suggest(&s.value, Arch::spellings().iter().copied())
    })
}
