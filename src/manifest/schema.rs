//! The manifest schema: top-level nodes, their children, defaults and cross-references.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use kdl::{KdlDocument, KdlNode};

use super::diag::Problem;
use super::fields::{Names, arch_prop, check_simple_name, parse_arch, record};
use super::nodes::{self, Spanned, name};
use super::source::{read_source, unpinned_host_file, unpinned_host_file_problem};
use super::tool::{check_uses, read_tool};
use crate::arch::Arch;
use crate::model::{Defaults, Model, Series, Source, Variant, VariantSet, expand};

const TOP: &[&str] = &["defaults", "builders", "variant", "tool", "series"];
const DEFAULTS: &[&str] = &[
    "executor",
    "llvm",
    "source-snapshot",
    "org",
    "image",
    "arches",
    "builder",
    "localversion",
    "cross-compile",
    "test-modules",
    "test-timeout",
    "requires",
];
const VARIANT: &[&str] = &[
    "fragment",
    "force-off",
    "localversion",
    "outputs",
    "exact-config",
    "patches",
    "arches",
];
const SERIES: &[&str] = &[
    "version",
    "source",
    "arches",
    "builder",
    "variants",
    "tools",
    "deprecated",
    "config",
    "patches",
    "source-date-epoch",
    "test-modules",
    "requires",
];

/// The nodes whose readers take properties (`sha256=`, `package=`, `arch=`) and check them.
const READ_WITH_PROPERTIES: &[&str] = &["source", "builder", "test-timeout", "args"];

/// Every other node of kernel.kdl takes none: one written there (`series "6.1.x"
/// deprecated=#true`, for the child `deprecated #true`) would otherwise be dropped unread.
fn check_no_props(nodes: &[KdlNode], problems: &mut Vec<Problem>) {
    for node in nodes {
        if !READ_WITH_PROPERTIES.contains(&name(node)) {
            nodes::check_props(node, &[], problems);
        }
        check_no_props(nodes::children(node), problems);
    }
}

/// The model of an empty kernel.kdl: LinuxKit's conventions.
fn conventions(root: &Path) -> Model {
    Model {
        root: root.to_path_buf(),
        defaults: Defaults {
            org: "linuxkit".into(),
            image: "kernel".into(),
            arches: Arch::ALL.to_vec(),
            builder: "linuxkit/alpine:latest".into(),
            localversion: "-linuxkit".into(),
            cross_compile: BTreeMap::new(),
            llvm: false,
            arch_builders: BTreeMap::new(),
            executor: None,
            source_snapshot: true,
            test_modules: Vec::new(),
            test_timeout: crate::model::TEST_TIMEOUT,
            arch_test_timeouts: BTreeMap::new(),
            requires: Vec::new(),
        },
        variants: Vec::new(),
        tools: Vec::new(),
        series: Vec::new(),
        endpoints: BTreeMap::new(),
        native_builds: false,
        builder_id: None,
    }
}

/// Reads the whole document, collecting every problem rather than stopping at the first.
pub fn read(root: &Path, doc: &KdlDocument) -> Result<Model, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut model = conventions(root);
    check_no_props(doc.nodes(), &mut problems);
    // Defaults first: series inherit from them wherever they appear in the file.
    for (i, node) in doc
        .nodes()
        .iter()
        .filter(|n| name(n) == "defaults")
        .enumerate()
    {
        if i > 0 {
            problems.push(
                Problem::new("a second `defaults` block", node.span(), "second one")
                    .help("merge it into the first: one `defaults` block per file"),
            );
            continue;
        }
        read_defaults(node, &mut model.defaults, &mut problems);
    }
    // Names declared so far, so that a file of thousands of nodes is read in linear time.
    let mut names = Names::default();
    let mut names_used = Vec::new();
    for node in doc.nodes() {
        match name(node) {
            "defaults" => {}
            "builders" => {
                let endpoints = record(&mut problems, read_endpoints(node));
                model.endpoints.extend(endpoints.into_iter().flatten());
            }
            "variant" => collect(
                read_variant(node, &mut names, &mut problems),
                &mut model.variants,
                &mut problems,
            ),
            "tool" => collect(
                read_tool(node, &mut names, &mut names_used, &mut problems),
                &mut model.tools,
                &mut problems,
            ),
            "series" => {}
            _ => problems.push(nodes::unknown_node(node, "kernel.kdl", TOP)),
        }
    }
    check_uses(&model.tools, &names_used, &mut problems);
    let mut seen = HashSet::new();
    for node in doc.nodes().iter().filter(|n| name(n) == "series") {
        let series = read_series(root, node, &model, &mut seen, &mut problems);
        collect(series, &mut model.series, &mut problems);
    }
    super::tool::check_host_files(doc, &model, &mut problems);
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(problems)
    }
}

fn collect<T>(item: Result<T, Problem>, into: &mut Vec<T>, problems: &mut Vec<Problem>) {
    match item {
        Ok(item) => into.push(item),
        Err(problem) => problems.push(problem),
    }
}

fn read_defaults(node: &KdlNode, d: &mut Defaults, problems: &mut Vec<Problem>) {
    let single = [
        "executor",
        "llvm",
        "source-snapshot",
        "org",
        "image",
        "arches",
        "localversion",
        "cross-compile",
        "test-modules",
    ];
    let mut seen = Vec::new();
    for child in nodes::children(node) {
        if let Err(p) = nodes::once(child, "`defaults`", &single, &mut seen) {
            problems.push(p);
            continue;
        }
        let ok = match name(child) {
            "org" => nodes::string(child)
                .and_then(|s| repository_name(&s, "org", true))
                .map(|s| d.org = s),
            "image" => nodes::string(child)
                .and_then(|s| repository_name(&s, "image", false))
                .map(|s| d.image = s),
            "builder" => read_builder(child).map(|(arch, image)| match arch {
                Some(arch) => {
                    d.arch_builders.insert(arch, image);
                }
                None => d.builder = image,
            }),
            "executor" => read_executor(child).map(|e| d.executor = Some(e)),
            "localversion" => nodes::string(child).map(|s| d.localversion = s.value),
            "arches" => read_arches(child).map(|a| d.arches = a),
            "cross-compile" => read_cross(child).map(|c| d.cross_compile = c),
            "llvm" => nodes::boolean(child).map(|b| d.llvm = b),
            "source-snapshot" => nodes::boolean(child).map(|b| d.source_snapshot = b),
            "test-modules" => nodes::unique_strings(child)
                .map(|m| d.test_modules = m.into_iter().map(|s| s.value).collect()),
            "test-timeout" => read_timeout(child).map(|(arch, t)| match arch {
                Some(arch) => {
                    d.arch_test_timeouts.insert(arch, t);
                }
                None => d.test_timeout = t,
            }),
            "requires" => read_requires(child).map(|r| d.requires.extend(r)),
            _ => Err(nodes::unknown_node(child, "`defaults`", DEFAULTS)),
        };
        record(problems, ok);
    }
}

/// `requires "kernel/common/requirements"`: files inside the workspace.
fn read_requires(node: &KdlNode) -> Result<Vec<String>, Problem> {
    let files = nodes::unique_strings(node)?;
    for file in &files {
        nodes::inside(file, "requirement file")?;
    }
    Ok(files.into_iter().map(|s| s.value).collect())
}

/// `test-timeout 300`, or `test-timeout 600 arch="riscv64"` for one arch: seconds, at least
/// one, at most a day.
fn read_timeout(node: &KdlNode) -> Result<(Option<Arch>, u32), Problem> {
    let arch = arch_prop(node)?;
    let seconds = nodes::integer(node)?;
    let seconds = u32::try_from(seconds)
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| {
            Problem::new(
                format!("a test timeout of {seconds} seconds"),
                node.span(),
                "out of range",
            )
            .help("give the seconds a boot may take, from 1 to 86400")
        })?;
    Ok((arch, seconds))
}

/// `builder "image"`, or `builder "image" arch="aarch64"` for one arch.
fn read_builder(node: &KdlNode) -> Result<(Option<Arch>, String), Problem> {
    let arch = arch_prop(node)?;
    Ok((arch, nodes::string(node)?.value))
}

const EXECUTORS: &[&str] = &["host", "docker"];

fn read_executor(node: &KdlNode) -> Result<String, Problem> {
    let value = nodes::string(node)?;
    if !EXECUTORS.contains(&value.value.as_str()) {
        return Err(Problem::new(
            format!("unknown executor `{}`", value.value),
            value.span,
            "not an executor",
        )
        .suggest(&value.value, EXECUTORS.iter().copied())
        .help("the executors are `host` and `docker`"));
    }
    Ok(value.value)
}

/// `builders { aarch64 "tcp://arm-builder:2375" }`: the Docker daemon that builds an arch natively.
fn read_endpoints(node: &KdlNode) -> Result<BTreeMap<Arch, String>, Problem> {
    let mut map = BTreeMap::new();
    for child in nodes::children(node) {
        let arch = parse_arch(&Spanned {
            value: name(child).to_string(),
            span: child.name().span(),
        })?;
        let url = nodes::string(child)?;
        if !["unix://", "tcp://", "http://", "https://", "ssh://"]
            .iter()
            .any(|scheme| url.value.starts_with(scheme))
        {
            return Err(Problem::new(
                format!("`{}` is not a Docker endpoint", url.value),
                url.span,
                "no known scheme",
            )
            .help("write unix:///path/docker.sock, tcp://host:2375 or ssh://user@host"));
        }
        map.insert(arch, url.value);
    }
    Ok(map)
}

fn read_arches(node: &KdlNode) -> Result<Vec<Arch>, Problem> {
    let mut arches = Vec::new();
    for s in nodes::unique_strings(node)? {
        let arch = parse_arch(&s)?;
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    Ok(arches)
}

/// `cross-compile aarch64="aarch64-linux-gnu-"`: properties keyed by arch.
fn read_cross(node: &KdlNode) -> Result<BTreeMap<Arch, String>, Problem> {
    let mut map = BTreeMap::new();
    for entry in node.entries() {
        let Some(key) = entry.name() else {
            return Err(Problem::new(
                "`cross-compile` takes arch=prefix properties",
                entry.span(),
                "positional value",
            )
            .help("write e.g. cross-compile aarch64=\"aarch64-linux-gnu-\""));
        };
        let arch = parse_arch(&Spanned {
            value: key.value().to_string(),
            span: key.span(),
        })?;
        let prefix = entry.value().as_string().ok_or_else(|| {
            Problem::new(
                "a cross prefix must be a string",
                entry.span(),
                "not a string",
            )
        })?;
        map.insert(arch, prefix.to_string());
    }
    Ok(map)
}

fn read_variant(
    node: &KdlNode,
    names: &mut Names,
    problems: &mut Vec<Problem>,
) -> Result<Variant, Problem> {
    let id = nodes::string(node)?;
    check_simple_name(&id, "variant")?;
    if !names.variants.insert(id.value.clone()) {
        return Err(Problem::new(
            format!("variant `{}` is declared twice", id.value),
            id.span,
            "second declaration",
        ));
    }
    let mut v = Variant {
        name: id.value,
        fragments: Vec::new(),
        force_off: Vec::new(),
        localversion_suffix: String::new(),
        outputs: Vec::new(),
        exact_config: false,
        patches: None,
        arches: None,
    };
    let mut seen = Vec::new();
    for child in nodes::children(node) {
        let single = ["localversion", "exact-config", "patches", "arches"];
        if let Err(p) = nodes::once(child, "a `variant`", &single, &mut seen) {
            problems.push(p);
            continue;
        }
        let ok = match name(child) {
            "fragment" => nodes::unique_strings(child).and_then(|s| {
                for f in &s {
                    nodes::inside(f, "fragment")?;
                }
                v.fragments.extend(s.into_iter().map(|s| s.value));
                Ok(())
            }),
            "force-off" => read_options(child).map(|o| v.force_off.extend(o)),
            "localversion" => nodes::string(child).map(|s| v.localversion_suffix = s.value),
            "arches" => read_arches(child).map(|a| v.arches = Some(a)),
            "outputs" => nodes::unique_strings(child)
                .map(|s| v.outputs.extend(s.into_iter().map(|s| s.value))),
            "exact-config" => nodes::boolean(child).map(|b| v.exact_config = b),
            "patches" => nodes::string(child)
                .and_then(|s| nodes::inside(&s, "patch directory").map(|_| s))
                .map(|s| v.patches = Some(s.value)),
            _ => Err(nodes::unknown_node(child, "a `variant`", VARIANT)),
        };
        record(problems, ok);
    }
    Ok(v)
}

/// Kconfig symbols, written with or without the `CONFIG_` prefix.
fn read_options(node: &KdlNode) -> Result<Vec<String>, Problem> {
    let mut out = Vec::new();
    for s in nodes::unique_strings(node)? {
        let symbol = s.value.strip_prefix("CONFIG_").unwrap_or(&s.value);
        if symbol.is_empty()
            || !symbol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Problem::new(
                format!("`{}` is not a Kconfig symbol", s.value),
                s.span,
                "not a symbol",
            )
            .help("write the option as CONFIG_NAME"));
        }
        out.push(format!("CONFIG_{symbol}"));
    }
    Ok(out)
}

/// `org` and `image` become image references (`org/image:tag`): OCI repository components,
/// lowercase letters and digits joined by `.`, `_`, `__` or dashes; `org` may have several.
fn repository_name(s: &Spanned, what: &str, slashes: bool) -> Result<String, Problem> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        !b.is_empty()
            && alnum(&b[0])
            && alnum(&b[b.len() - 1])
            && b.iter()
                .all(|x| alnum(x) || matches!(x, b'.' | b'_' | b'-'))
            && !c.contains("..")
            && !c.contains("___")
    };
    let parts: Vec<&str> = s.value.split('/').collect();
    if (slashes || parts.len() == 1) && parts.iter().all(|c| component_ok(c)) {
        return Ok(s.value.clone());
    }
    Err(Problem::new(
        format!("`{}` is not a valid image {what}", s.value),
        s.span,
        "not an image name",
    )
    .help("use lowercase letters and digits, joined by `.`, `_` or `-`, e.g. \"linuxkit\""))
}

/// What a series node says before defaults and conventions are applied.
#[derive(Default)]
struct RawSeries {
    version: Option<Spanned>,
    source: Option<(Source, Spanned)>,
    /// A `source` node was written, even if it was invalid (and reported as such).
    source_written: bool,
    arches: Option<Vec<Arch>>,
    builder: Option<String>,
    arch_builders: BTreeMap<Arch, String>,
    variants: Vec<Spanned>,
    tools: Vec<Spanned>,
    deprecated: bool,
    config: Option<Spanned>,
    patches: Option<String>,
    epoch: Option<u64>,
    test_modules: Option<Vec<String>>,
    requires: Vec<String>,
}

fn read_series(
    root: &Path,
    node: &KdlNode,
    model: &Model,
    seen: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Result<Series, Problem> {
    let id = nodes::string(node)?;
    let (major, minor) = parse_series_name(&id)?;
    if !seen.insert(id.value.clone()) {
        let message = format!("series `{}` is declared twice", id.value);
        return Err(Problem::new(message, id.span, "second declaration")
            .help("each series appears once; bump its `version` instead"));
    }
    let mut raw = RawSeries::default();
    let mut seen = Vec::new();
    let single = [
        "version",
        "source",
        "arches",
        "deprecated",
        "config",
        "patches",
        "source-date-epoch",
        "test-modules",
    ];
    for child in nodes::children(node) {
        let ok = nodes::once(child, "a `series`", &single, &mut seen)
            .and_then(|_| read_series_child(child, &mut raw));
        record(problems, ok);
    }
    // Report everything that is wrong with the series before giving up on it.
    let variants = resolve_variants(&raw.variants, model, problems);
    let tools = resolve_tools(&raw.tools, model, problems);
    let Some((version, source)) = version_and_source(&mut raw, &id, (major, minor), problems)
    else {
        // The reasons are recorded already; report the series itself as unusable only if not.
        return Err(problems
            .pop()
            .expect("a missing version or source was recorded"));
    };
    let span = raw.config.as_ref().map_or(id.span, |c| c.span);
    let series = raw.into_series(id.value, (version, source), (variants, tools), model);
    check_files(root, &series, model, span, problems, &mut HashSet::new());
    Ok(series)
}

/// The series' version (and whether it follows its package's) and its source, with every
/// problem of either recorded; `None` if either is missing.
fn version_and_source(
    raw: &mut RawSeries,
    id: &Spanned,
    (major, minor): (u64, u64),
    problems: &mut Vec<Problem>,
) -> Option<((semver::Version, bool), Source)> {
    let follows_package = raw.version.is_none()
        && raw
            .source
            .as_ref()
            .is_some_and(|(s, _)| s.package.is_some());
    let version = if follows_package {
        // Read from the package's tarball once the source is resolved (manifest::packages).
        Some(semver::Version::new(major, minor, 0))
    } else {
        record(problems, version_of(raw, id, major, minor))
    };
    let source = raw.source.take().ok_or_else(|| {
        Problem::new(format!("series `{}` has no `source`", id.value), id.span, "declared here").help(
            "add: source \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-X.Y.Z.tar.xz\" sha256=\"…\"",
        )
    });
    let source = if raw.source_written {
        source.ok()
    } else {
        record(problems, source)
    };
    Some(((version?, follows_package), source?.0))
}

impl RawSeries {
    /// The series, with the defaults filling what its node left out.
    fn into_series(
        self,
        name: String,
        ((version, version_from_source), source): ((semver::Version, bool), Source),
        (variants, tools): (Vec<VariantSet>, Vec<String>),
        model: &Model,
    ) -> Series {
        let mut arch_builders = model.defaults.arch_builders.clone();
        arch_builders.extend(self.arch_builders);
        Series {
            version,
            version_from_source,
            source,
            arches: self.arches.unwrap_or_else(|| model.defaults.arches.clone()),
            builder: self
                .builder
                .unwrap_or_else(|| model.defaults.builder.clone()),
            arch_builders,
            variants,
            tools,
            deprecated: self.deprecated,
            config: self
                .config
                .map_or("kernel/{series}/config-{arch}".into(), |c| c.value),
            patches: self
                .patches
                .unwrap_or_else(|| "kernel/{series}/patches".into()),
            source_date_epoch: self.epoch,
            test_modules: self
                .test_modules
                .unwrap_or_else(|| model.defaults.test_modules.clone()),
            requires: (model.defaults.requires.iter().cloned())
                .chain(self.requires)
                .collect(),
            name,
        }
    }
}

fn read_series_child(child: &KdlNode, raw: &mut RawSeries) -> Result<(), Problem> {
    match name(child) {
        "version" => nodes::string(child).map(|s| raw.version = Some(s)),
        "source" => {
            raw.source_written = true;
            read_source(child)
                .and_then(|(source, url)| match unpinned_host_file(&source) {
                    true => Err(unpinned_host_file_problem(&url)),
                    false => Ok((source, url)),
                })
                .map(|s| raw.source = Some(s))
        }
        "arches" => read_arches(child).map(|a| raw.arches = Some(a)),
        "builder" => read_builder(child).map(|(arch, image)| match arch {
            Some(arch) => {
                raw.arch_builders.insert(arch, image);
            }
            None => raw.builder = Some(image),
        }),
        "variants" => nodes::unique_strings(child).map(|s| raw.variants.extend(s)),
        "tools" => nodes::unique_strings(child).map(|s| raw.tools.extend(s)),
        "deprecated" => nodes::boolean(child).map(|b| raw.deprecated = b),
        "config" => nodes::string(child)
            .and_then(|s| nodes::inside(&s, "config").map(|_| s))
            .map(|s| raw.config = Some(s)),
        "patches" => nodes::string(child)
            .and_then(|s| nodes::inside(&s, "patch directory").map(|_| s))
            .map(|s| raw.patches = Some(s.value)),
        "source-date-epoch" => nodes::integer(child).map(|n| raw.epoch = Some(n)),
        "test-modules" => nodes::unique_strings(child)
            .map(|m| raw.test_modules = Some(m.into_iter().map(|s| s.value).collect())),
        "requires" => read_requires(child).map(|r| raw.requires.extend(r)),
        _ => Err(nodes::unknown_node(child, "a `series`", SERIES)),
    }
}

/// `6.6.x` names a series; the version must belong to it.
fn parse_series_name(id: &Spanned) -> Result<(u64, u64), Problem> {
    let parts: Vec<&str> = id.value.split('.').collect();
    if let [major, minor, "x"] = parts.as_slice()
        && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
    {
        return Ok((major, minor));
    }
    Err(Problem::new(
        format!("`{}` is not a series name", id.value),
        id.span,
        "expected MAJOR.MINOR.x",
    )
    .help("name a series by its major and minor version, e.g. \"6.6.x\""))
}

fn version_of(
    raw: &RawSeries,
    id: &Spanned,
    major: u64,
    minor: u64,
) -> Result<semver::Version, Problem> {
    let v = raw.version.as_ref().ok_or_else(|| {
        Problem::new(
            format!("series `{}` has no `version`", id.value),
            id.span,
            "declared here",
        )
        .help(format!(
            "add: version \"{major}.{minor}.1\" (the full kernel release), or take it from a package's tarball with package= on the source"
        ))
    })?;
    let version = semver::Version::parse(&v.value).map_err(|e| {
        Problem::new(
            format!("`{}` is not a kernel version: {e}", v.value),
            v.span,
            "not MAJOR.MINOR.PATCH",
        )
        .help(format!(
            "write the full release, e.g. \"{major}.{minor}.1\""
        ))
    })?;
    if version.major != major || version.minor != minor {
        let message = format!(
            "version `{}` does not belong to series `{}`",
            v.value, id.value
        );
        return Err(Problem::new(message, v.span, "wrong series").help(format!(
            "a `{}` version starts with {major}.{minor}.",
            id.value
        )));
    }
    Ok(version)
}

/// Parses `rt-dbg`-style sets; each part must be a declared variant, used once.
fn resolve_variants(
    given: &[Spanned],
    model: &Model,
    problems: &mut Vec<Problem>,
) -> Vec<VariantSet> {
    let known: Vec<&str> = model.variants.iter().map(|v| v.name.as_str()).collect();
    let mut sets: Vec<VariantSet> = Vec::new();
    for s in given {
        let Some(set) = record(problems, variant_set(s, model, &known)) else {
            continue;
        };
        if !sets.contains(&set) {
            sets.push(set);
        }
    }
    sets
}

fn variant_set(s: &Spanned, model: &Model, known: &[&str]) -> Result<VariantSet, Problem> {
    let mut parts: Vec<String> = Vec::new();
    for part in s.value.split('-') {
        if model.variant(part).is_none() {
            return Err(
                Problem::new(format!("unknown variant `{part}`"), s.span, "not declared")
                    .suggest(part, known.iter().copied()),
            );
        }
        if parts.iter().any(|p| p == part) {
            return Err(Problem::new(
                format!("variant `{part}` appears twice in `{}`", s.value),
                s.span,
                "repeated",
            ));
        }
        parts.push(part.to_string());
    }
    // Canonical order is declaration order, so `dbg-rt` and `rt-dbg` are one set.
    parts.sort_by_key(|p| known.iter().position(|k| k == p));
    Ok(VariantSet(parts))
}

fn resolve_tools(given: &[Spanned], model: &Model, problems: &mut Vec<Problem>) -> Vec<String> {
    let known: Vec<&str> = model.tools.iter().map(|t| t.name.as_str()).collect();
    let mut tools = Vec::new();
    for s in given {
        if model.tool(&s.value).is_some_and(|t| t.library) {
            problems.push(
                Problem::new(
                    format!("`{}` is a library: it has no image to build", s.value),
                    s.span,
                    "a library",
                )
                .help("name it in the `uses` of the tools that need it (`uses \"NAME\"`)"),
            );
        } else if model.tool(&s.value).is_none() {
            problems.push(
                Problem::new(
                    format!("unknown tool `{}`", s.value),
                    s.span,
                    "not declared",
                )
                .suggest(&s.value, known.iter().copied()),
            );
        } else if !tools.contains(&s.value) {
            tools.push(s.value.clone());
        }
    }
    tools
}

/// Whether every file the model names exists (the span-free form of [`check_files`]).
pub fn files_present(model: &Model) -> bool {
    let mut problems = Vec::new();
    let mut found = HashSet::new();
    for series in &model.series {
        check_files(
            &model.root,
            series,
            model,
            miette::SourceSpan::from(0..0),
            &mut problems,
            &mut found,
        );
    }
    problems.is_empty()
}

/// Every file a series needs must exist now, not halfway through a build. `found` holds the
/// files found so far: series share fragments, and this runs before every plan.
fn check_files(
    root: &Path,
    series: &Series,
    model: &Model,
    span: miette::SourceSpan,
    problems: &mut Vec<Problem>,
    found: &mut HashSet<String>,
) {
    if series.deprecated {
        return;
    }
    let mut outside = Vec::new();
    let mut missing = HashSet::new();
    let mut present = |path: &str| {
        if found.contains(path) {
            return true;
        }
        if !root.join(path).is_file() {
            return false;
        }
        if let Some(real) = crate::fsutil::leaves_root(root, path) {
            outside.push((path.to_string(), real));
        }
        found.insert(path.to_string())
    };
    for &arch in &series.arches {
        let config = series.config_path(arch);
        if !present(&config) {
            problems.push(
                Problem::new(format!("missing config `{config}` for `{}` on {arch}", series.name), span, "needed by this series")
                    .help(format!("create `{config}` (a full .config or a savedefconfig file), or drop {arch} from `arches`")),
            );
        }
        for set in series
            .variants
            .iter()
            .filter(|s| model.set_builds_for(s, arch))
        {
            for variant in model.variants_of(set) {
                for fragment in &variant.fragments {
                    let path = expand(fragment, &series.name, Some(arch));
                    // A variant in several sets (`rt`, `rt-dbg`) is one missing file, said once.
                    if !present(&path) && missing.insert(path.clone()) {
                        let message =
                            format!("missing fragment `{path}` of variant `{}`", variant.name);
                        problems.push(Problem::new(message, span, "needed by this series").help(
                            format!(
                                "create `{path}` or remove the fragment from variant `{}`",
                                variant.name
                            ),
                        ));
                    }
                }
            }
        }
        for file in &series.requires {
            let path = expand(file, &series.name, Some(arch));
            if !present(&path) && missing.insert(path.clone()) {
                problems.push(
                    Problem::new(format!("missing requirement file `{path}`"), span, "needed by this series")
                        .help(format!("create `{path}` (Kconfig lines: CONFIG_X=y, CONFIG_X=m, # CONFIG_X is not set) or drop it from `requires`")),
                );
            }
        }
    }
    for (path, real) in outside {
        problems.push(
            Problem::new(
                format!(
                    "`{path}` leads outside the workspace, to `{}`",
                    real.display()
                ),
                span,
                "used by this series",
            )
            .help(format!(
                "copy the file into the workspace (the workspace is {}) instead of linking to it",
                root.display()
            )),
        );
    }
}
