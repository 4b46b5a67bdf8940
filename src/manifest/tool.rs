//! `tool` nodes: a tool image or a library, its directory, binary, build system, arguments,
//! own source and the libraries it uses, and the checks that tie these together.

use std::collections::BTreeMap;

use kdl::KdlNode;
use miette::SourceSpan;

use super::diag::Problem;
use super::fields::{Names, arch_prop, check_simple_name, record};
use super::nodes::{self, Spanned, name};
use super::source::{read_source, unpinned_host_file, unpinned_host_file_problem};
use crate::arch::Arch;
use crate::model::{BuildSystem, Source, Tool};

/// The children a `tool` may have.
pub(super) const TOOL: &[&str] = &[
    "dir",
    "binary",
    "headers",
    "args",
    "strip",
    "source",
    "library",
    "uses",
    "build",
    "install",
    "kernel-files",
];

/// The children a `tool` may have at most once (`args` and `uses` add up).
const SINGLE: &[&str] = &[
    "dir",
    "binary",
    "headers",
    "strip",
    "source",
    "library",
    "build",
    "install",
    "kernel-files",
];

/// What reading a tool's children noted for the checks that need all of them.
#[derive(Default)]
struct Written<'a> {
    seen: Vec<&'a str>,
    strip: Option<SourceSpan>,
    kernel_files: Option<SourceSpan>,
    binary: bool,
}

/// Reads one `tool` node; the libraries it names in `uses` go to `names_used` and are checked
/// once every tool is known ([`check_uses`]).
pub(super) fn read_tool(
    node: &KdlNode,
    names: &mut Names,
    names_used: &mut Vec<(String, Spanned)>,
    problems: &mut Vec<Problem>,
) -> Result<Tool, Problem> {
    let id = nodes::string(node)?;
    check_simple_name(&id, "tool")?;
    if names.variants.contains(&id.value) || !names.tools.insert(id.value.clone()) {
        return Err(Problem::new(
            format!("`{}` is declared twice", id.value),
            id.span,
            "second declaration",
        )
        .help("tool and variant names share one namespace in labels"));
    }
    let mut tool = plain_tool(id.value);
    let mut written = Written::default();
    for child in nodes::children(node) {
        if let Err(p) = nodes::once(child, "a `tool`", SINGLE, &mut written.seen) {
            problems.push(p);
            continue;
        }
        let ok = read_child(child, &mut tool, &mut written, names_used);
        record(problems, ok);
    }
    if tool.installs() && !written.binary {
        // An installed tree puts its programs under usr/bin.
        tool.binary = format!("usr/bin/{}", tool.name);
    }
    problems.extend(strip_problem(&tool, written.strip));
    problems.extend(kernel_files_problem(&tool, written.kernel_files));
    Ok(tool)
}

/// A tool of that name as it is when its node says nothing: one binary of the same name, made
/// by `make` in `tools/<name>` of the kernel tree.
fn plain_tool(name: String) -> Tool {
    Tool {
        dir: format!("tools/{name}"),
        binary: name.clone(),
        name,
        needs_headers: false,
        args: Vec::new(),
        arch_args: BTreeMap::new(),
        strip: false,
        source: None,
        library: false,
        uses: Vec::new(),
        build: BuildSystem::Make,
        install: false,
        kernel_files: false,
    }
}

fn read_child<'a>(
    child: &'a KdlNode,
    tool: &mut Tool,
    written: &mut Written<'a>,
    names_used: &mut Vec<(String, Spanned)>,
) -> Result<(), Problem> {
    match name(child) {
        "dir" => nodes::string(child)
            .and_then(|s| nodes::inside(&s, "tool directory").map(|_| s))
            .map(|s| tool.dir = s.value),
        "binary" => nodes::string(child)
            .and_then(|s| nodes::inside(&s, "tool binary").map(|_| s))
            .map(|s| {
                tool.binary = s.value;
                written.binary = true;
            }),
        "headers" => nodes::boolean(child).map(|b| tool.needs_headers = b),
        "strip" => nodes::boolean(child).map(|b| {
            tool.strip = b;
            written.strip = Some(child.span());
        }),
        "source" => read_tool_source(child).map(|s| tool.source = Some(s)),
        "library" => nodes::boolean(child).map(|b| tool.library = b),
        "build" => read_build_system(child).map(|b| tool.build = b),
        "install" => nodes::boolean(child).map(|b| tool.install = b),
        "kernel-files" => nodes::boolean(child).map(|b| {
            tool.kernel_files = b;
            written.kernel_files = Some(child.span());
        }),
        "uses" => nodes::unique_strings(child).map(|names| {
            tool.uses.extend(names.iter().map(|n| n.value.clone()));
            names_used.extend(names.into_iter().map(|n| (tool.name.clone(), n)));
        }),
        "args" => read_tool_args(child).map(|(arch, args)| match arch {
            Some(arch) => tool.arch_args.entry(arch).or_default().extend(args),
            None => tool.args.extend(args),
        }),
        _ => Err(nodes::unknown_node(child, "a `tool`", TOOL)),
    }
}

/// `strip #true` on a tool that installs a tree, which keeps what its install wrote.
fn strip_problem(tool: &Tool, at: Option<SourceSpan>) -> Option<Problem> {
    let span = at.filter(|_| tool.strip && tool.installs())?;
    Some(
        Problem::new(
            format!(
                "`{}` installs a tree, and `strip` is for a tool of one binary",
                tool.name
            ),
            span,
            "strip",
        )
        .help(
            "an installed tree keeps what its install wrote; pass the build's own option \
             for stripped binaries in `args` (for CMake, -DCMAKE_BUILD_TYPE=MinSizeRel)",
        ),
    )
}

/// `kernel-files #true` on a tool with no installed tree to put the kernel's files beside.
fn kernel_files_problem(tool: &Tool, at: Option<SourceSpan>) -> Option<Problem> {
    let lone_binary = tool.kernel_files && (tool.library || !tool.installs());
    let span = at.filter(|_| lone_binary)?;
    let what = if tool.library {
        "is a library, with no image"
    } else {
        "is one binary"
    };
    Some(
        Problem::new(
            format!(
                "`kernel-files` puts the kernel's headers beside an installed tree, and `{}` {what}",
                tool.name
            ),
            span,
            "kernel-files",
        )
        .help("give the tool `install #true` (or `build \"cmake\"`), or drop `kernel-files`"),
    )
}

/// `build "make"` or `build "cmake"`.
fn read_build_system(node: &KdlNode) -> Result<BuildSystem, Problem> {
    let value = nodes::string(node)?;
    match value.value.as_str() {
        "make" => Ok(BuildSystem::Make),
        "cmake" => Ok(BuildSystem::Cmake),
        other => Err(Problem::new(
            format!("`{other}` is not a build system kbuild knows"),
            value.span,
            "unknown build system",
        )
        .suggest(other, ["make", "cmake"])),
    }
}

/// A tool's source that is a file of this machine outside the workspace must be pinned: by its
/// own sha256, or by being the very tarball a pinned series reads (perf's libraries from the
/// kernel's own tarball). Checked once every series is known.
pub(super) fn check_host_files(
    doc: &kdl::KdlDocument,
    model: &crate::model::Model,
    problems: &mut Vec<Problem>,
) {
    let pinned = |url: &str| {
        model.series.iter().any(|s| {
            s.source.urls.iter().any(|u| u == url)
                && (s.source.sha256.is_some() || s.source.package.is_some())
        })
    };
    let sources = doc
        .nodes()
        .iter()
        .filter(|n| name(n) == "tool")
        .flat_map(nodes::children)
        .filter(|c| name(c) == "source");
    for node in sources {
        let Ok((source, url)) = read_source(node) else {
            continue;
        };
        if unpinned_host_file(&source) && !source.urls.iter().any(|u| pinned(u)) {
            problems.push(unpinned_host_file_problem(&url));
        }
    }
}

/// A tool's own tarball. `package=` is for series, whose version it gives; a tool whose tarball
/// is a series' package source takes that series' pin (see `pins::apply`).
fn read_tool_source(node: &KdlNode) -> Result<Source, Problem> {
    let (source, _) = read_source(node)?;
    if source.package.is_some() {
        return Err(Problem::new(
            "`package=` is for a series' source, not a tool's",
            node.span(),
            "not for tools",
        )
        .help("give sha256=\"…\", or let the first fetch pin it in kernel.lock; a tool's source that is a series' package tarball (same URL) takes that series' pin"));
    }
    Ok(source)
}

/// Every `uses` names a library (a tool with `library #true`) other than the tool itself, and
/// a library uses none: its build has no libraries of its own to link.
pub(super) fn check_uses(tools: &[Tool], used: &[(String, Spanned)], problems: &mut Vec<Problem>) {
    for (user, name) in used {
        let is_library = |t: &&Tool| t.name == name.value && t.library;
        let user_is_library = tools.iter().any(|t| &t.name == user && t.library);
        let problem = if user_is_library {
            Problem::new(
                format!("the library `{user}` cannot use `{}`", name.value),
                name.span,
                "a library's `uses`",
            )
            .help("only tools build against libraries; build the two as one library")
        } else if !tools.iter().any(|t| is_library(&t)) {
            let known = tools.iter().filter(|t| t.library).map(|t| t.name.as_str());
            Problem::new(
                format!("`{}` is not a declared library", name.value),
                name.span,
                "not a library",
            )
            .help("declare it as `tool \"NAME\" { library #true … }` before naming it in `uses`")
            .suggest(&name.value, known)
        } else {
            continue;
        };
        problems.push(problem);
    }
}

/// `args "NO_JVMTI=1" "perf"`, or `args "NO_LIBELF=1" arch="aarch64"` for one arch.
fn read_tool_args(node: &KdlNode) -> Result<(Option<Arch>, Vec<String>), Problem> {
    let arch = arch_prop(node)?;
    let args = nodes::strings(node)?;
    Ok((arch, args.into_iter().map(|a| a.value).collect()))
}
