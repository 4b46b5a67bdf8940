//! Small readers over KDL nodes that turn shape errors into spanned problems.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::diag::Problem;

/// A string value with where it was written.
#[derive(Debug, Clone)]
pub struct Spanned {
    pub value: String,
    pub span: SourceSpan,
}

pub fn name(node: &KdlNode) -> &str {
    node.name().value()
}

pub fn children(node: &KdlNode) -> &[KdlNode] {
    node.children().map(KdlDocument::nodes).unwrap_or(&[])
}

fn args(node: &KdlNode) -> impl Iterator<Item = &KdlEntry> {
    node.entries().iter().filter(|e| e.name().is_none())
}

/// Rejects properties other than `allowed`, and a property given twice (KDL keeps the last).
pub fn check_props(node: &KdlNode, allowed: &[&str], problems: &mut Vec<Problem>) {
    let mut seen: Vec<&str> = Vec::new();
    for entry in node.entries() {
        let Some(key) = entry.name() else { continue };
        if seen.contains(&key.value()) {
            problems.push(Problem::new(
                format!(
                    "property `{}` is given twice on `{}`",
                    key.value(),
                    name(node)
                ),
                key.span(),
                "second one",
            ));
        }
        seen.push(key.value());
        if !allowed.contains(&key.value()) {
            let problem = Problem::new(
                format!("unknown property `{}` on `{}`", key.value(), name(node)),
                key.span(),
                "not a property of this node",
            );
            problems.push(problem.suggest(key.value(), allowed.iter().copied()));
        }
    }
}

pub fn prop<'a>(node: &'a KdlNode, key: &str) -> Option<&'a KdlEntry> {
    node.entries()
        .iter()
        .find(|e| e.name().is_some_and(|n| n.value() == key))
}

fn as_string(entry: &KdlEntry, what: &str) -> Result<Spanned, Problem> {
    match entry.value() {
        KdlValue::String(s) => Ok(Spanned {
            value: s.clone(),
            span: entry.span(),
        }),
        _ => Err(Problem::new(
            format!("{what} must be a string"),
            entry.span(),
            "not a string",
        )
        .help("write it in double quotes")),
    }
}

/// All positional arguments as strings; at least one is required.
pub fn strings(node: &KdlNode) -> Result<Vec<Spanned>, Problem> {
    let what = format!("`{}`", name(node));
    let values = args(node)
        .map(|e| as_string(e, &what))
        .collect::<Result<Vec<_>, _>>()?;
    if values.is_empty() {
        let message = format!("`{}` needs at least one value", name(node));
        return Err(Problem::new(message, node.span(), "no value given"));
    }
    Ok(values)
}

/// All positional arguments as strings, for a list whose order or repeats mean nothing
/// (`arches`, `variants`, `tools`, `fragment` …): a value given twice is a mistake (a typo for
/// another value, most often), pointed at, never dropped silently.
pub fn unique_strings(node: &KdlNode) -> Result<Vec<Spanned>, Problem> {
    let values = strings(node)?;
    for (i, value) in values.iter().enumerate() {
        if values[..i].iter().any(|v| v.value == value.value) {
            return Err(Problem::new(
                format!("`{}` is given twice in `{}`", value.value, name(node)),
                value.span,
                "repeated",
            )
            .help("remove the repeat (or write the value you meant)"));
        }
    }
    Ok(values)
}

/// Exactly one positional string argument.
pub fn string(node: &KdlNode) -> Result<Spanned, Problem> {
    let mut values = strings(node)?;
    if values.len() > 1 {
        let message = format!("`{}` takes exactly one value", name(node));
        return Err(Problem::new(
            message,
            values[1].span,
            "unexpected extra value",
        ));
    }
    Ok(values.remove(0))
}

/// A string property, if present.
pub fn string_prop(node: &KdlNode, key: &str) -> Result<Option<Spanned>, Problem> {
    prop(node, key)
        .map(|e| as_string(e, &format!("`{key}`")))
        .transpose()
}

/// One boolean argument; a bare node means `#true`.
pub fn boolean(node: &KdlNode) -> Result<bool, Problem> {
    let mut it = args(node);
    match (it.next(), it.next()) {
        (None, _) => Ok(true),
        (Some(entry), None) => entry.value().as_bool().ok_or_else(|| {
            Problem::new(
                format!("`{}` must be #true or #false", name(node)),
                entry.span(),
                "not a boolean",
            )
        }),
        (Some(_), Some(extra)) => Err(Problem::new(
            format!("`{}` takes one value", name(node)),
            extra.span(),
            "unexpected extra value",
        )),
    }
}

/// One non-negative integer argument.
pub fn integer(node: &KdlNode) -> Result<u64, Problem> {
    let entry = args(node).next().ok_or_else(|| {
        Problem::new(
            format!("`{}` needs a number", name(node)),
            node.span(),
            "no value given",
        )
    })?;
    entry
        .value()
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| {
            Problem::new(
                format!("`{}` must be a whole number", name(node)),
                entry.span(),
                "not a number",
            )
        })
}

/// Reports a child node that is not one of `known`.
pub fn unknown_node(node: &KdlNode, parent: &str, known: &[&str]) -> Problem {
    let message = format!("unknown node `{}` in {parent}", name(node));
    Problem::new(message, node.name().span(), "not understood here")
        .suggest(name(node), known.iter().copied())
}

/// Refuses a second `child` of a node among the `single` names, which take one value: a repeat
/// would silently override (a second `version` winning over the first).
pub fn once<'a>(
    child: &'a KdlNode,
    parent: &str,
    single: &[&str],
    seen: &mut Vec<&'a str>,
) -> Result<(), Problem> {
    let key = name(child);
    if !single.contains(&key) {
        return Ok(());
    }
    if seen.contains(&key) {
        return Err(Problem::new(
            format!("`{key}` is given twice in {parent}"),
            child.span(),
            "second one",
        )
        .help("keep one of them"));
    }
    seen.push(key);
    Ok(())
}

/// A path kernel.kdl names must stay in the workspace (or, for a tool's `dir`, in the kernel
/// tree): relative, without `..`.
pub fn inside(value: &Spanned, what: &str) -> Result<(), Problem> {
    let path = std::path::Path::new(&value.value);
    let escapes = path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        return Err(Problem::new(
            format!("{what} `{}` leaves the workspace", value.value),
            value.span,
            "outside",
        )
        .help("name a path inside the workspace, relative to kernel.kdl and without `..`; copy the file in if it lives elsewhere"));
    }
    Ok(())
}
