//! `kbuild import-linuxkit DIR`: turns a LinuxKit `kernel/` directory into kernel.kdl and kernel/.
//!
//! Mapped: series folders (`build-args` with KERNEL_VERSION, KERNEL_SERIES and BUILD_IMAGE, or for
//! a retired series without one, the version of its configs' header; `config-<arch>`, `patches/`,
//! a `deprecated` marker), `common/config-dbg` with `common/build-args-debug` (the dbg variant),
//! variant folders `<series>-<variant>` (patches applied first, per-arch config fragments), and
//! from the Makefile `ORG`, `IMAGE`, `IMAGE_BUILDER` and `TOOLS`. Files whose job kbuild does
//! itself (the Dockerfiles, build YAMLs) are reported as replaced; everything else as not mapped,
//! each with the reason.
//!
//! The importer may write into the directory that holds the LinuxKit tree itself (its parent
//! repository): kbuild's layout of kernel/ is LinuxKit's, so files already in place stay as they
//! are and only kernel.kdl is new.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::arch::Arch;

mod flat;

/// What an import did and what it could not map.
#[derive(Debug, Default)]
pub struct Report {
    pub series: Vec<String>,
    pub variants: Vec<String>,
    pub tools: Vec<String>,
    /// What was read and expressed another way, or whose job kbuild does itself.
    pub notes: Vec<String>,
    pub unmapped: Vec<String>,
}

#[derive(Debug, Default)]
struct Series {
    version: String,
    builder: Option<String>,
    arches: Vec<Arch>,
    deprecated: bool,
    /// Variant names that have a `<series>-<variant>` folder.
    variants: Vec<String>,
}

/// What kernel.kdl's top level gets from the Makefile and `common/`.
#[derive(Debug)]
struct Globals {
    org: String,
    image: String,
    /// `IMAGE_BUILDER`: the builder of series whose build-args name none.
    builder: Option<String>,
    /// The dbg variant's CONFIG_LOCALVERSION suffix, when `common/config-dbg` exists.
    dbg: Option<String>,
    perf: bool,
    /// bcc's release tag, from Dockerfile.bcc's `BCC_COMMIT`, when it names a release.
    bcc: Option<String>,
    /// The Makefile's TOOLS, whose files (`build-<tool>.yml`, `Dockerfile.<tool>`) are reported
    /// with the tool.
    tools: Vec<String>,
    /// Shared files already reported with what they map to (a tool's, the dbg variant's).
    taken: Vec<String>,
}

/// `KEY=VALUE` lines, as `--build-arg-file` reads them.
fn build_args(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The Makefile's plain variable assignments (`ORG?=linuxkit`, `TOOLS=bcc perf`, `X += y`);
/// values that expand other variables are left out, as kbuild cannot evaluate them.
fn make_vars(text: &str) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with(['\t', '#']) {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let append = name.ends_with('+');
        let name = name.trim_end_matches(['?', ':', '+', ' ']).trim();
        let value = value.split('#').next().unwrap_or("").trim();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || value.contains("$(")
        {
            continue;
        }
        let slot = vars.entry(name.to_string()).or_default();
        if append && !slot.is_empty() {
            slot.push(' ');
            slot.push_str(value);
        } else {
            *slot = value.to_string();
        }
    }
    vars
}

/// The `image:` of a LinuxKit build YAML (`build-perf.yml`: `image: kernel-perf`).
fn yaml_image(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("image:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
}

/// The version in a config's header: `# Linux/x86 5.11.4 Kernel Configuration`.
fn header_version(config: &str) -> Option<String> {
    config.lines().take(8).find_map(|l| {
        let rest = l.strip_prefix("# Linux/")?;
        let mut words = rest.split_whitespace();
        let (_arch, version) = (words.next()?, words.next()?);
        semver::Version::parse(version).ok()?;
        (words.next() == Some("Kernel")).then(|| version.to_string())
    })
}

fn is_series_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    matches!(parts.as_slice(), [a, b, "x"] if a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}

/// Whether two paths name one file (an import into the LinuxKit tree's own repository).
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Copies one file, or leaves it when it is already the destination.
fn place(from: &Path, to: &Path) -> std::io::Result<()> {
    if same_file(from, to) {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to).map(drop)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if same_file(from, to) {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            place(&entry.path(), &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// A variant folder (`6.6.x-rt/`) file by file: its patches and per-arch fragments are the
/// variant; a `deprecated` marker belongs to the series, which has its own.
fn import_variant_dir(
    lk: &Path,
    dest: &Path,
    base: &str,
    variant: &str,
    report: &mut Report,
) -> std::io::Result<()> {
    let name = format!("{base}-{variant}");
    let out = dest.join("kernel").join(&name);
    for entry in sorted(&lk.join(&name))? {
        let file = entry.file_name().to_string_lossy().into_owned();
        let is_config = (file.strip_prefix("config-")).is_some_and(|a| a.parse::<Arch>().is_ok());
        if file == "patches" && entry.path().is_dir() {
            copy_tree(&entry.path(), &out.join("patches"))?;
        } else if is_config {
            place(&entry.path(), &out.join(&file))?;
        } else if file == "deprecated" {
            report.notes.push(format!(
                "{name}/deprecated: not copied; whether {base} is built is said by {base} itself \
                 (`deprecated` in its series node)"
            ));
        } else {
            report.unmapped.push(format!(
                "{name}/{file}: a variant folder holds `patches/` and `config-<arch>` fragments; \
                 carry over by hand whatever this does"
            ));
        }
    }
    Ok(())
}

/// The sorted entries of a directory.
fn sorted(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// The version of a series folder without build-args, from its first config's header.
fn version_from_configs(dir: &Path, name: &str, report: &mut Report) -> Option<String> {
    let configs = sorted(dir).ok()?;
    let found = configs.iter().find_map(|e| {
        let file = e.file_name().to_string_lossy().into_owned();
        file.strip_prefix("config-")?.parse::<Arch>().ok()?;
        let text = std::fs::read_to_string(e.path()).ok()?;
        Some((file, header_version(&text)?))
    });
    match found {
        Some((file, version)) => {
            report.notes.push(format!(
                "{name}/: no build-args; version {version} from the header of {file}, \
                 imported as deprecated (LinuxKit builds no series without build-args)"
            ));
            Some(version)
        }
        None => {
            report.unmapped.push(format!(
                "{name}/: no build-args and no config whose header names a version"
            ));
            None
        }
    }
}

/// Reads one series folder, copying what it maps into `dest/kernel/<name>`.
fn import_series(
    dir: &Path,
    name: &str,
    dest: &Path,
    report: &mut Report,
) -> std::io::Result<Option<Series>> {
    let mut series = match std::fs::read_to_string(dir.join("build-args")) {
        Ok(text) => {
            let args = build_args(&text);
            let Some(version) = args.get("KERNEL_VERSION").cloned() else {
                report
                    .unmapped
                    .push(format!("{name}/build-args: no KERNEL_VERSION"));
                return Ok(None);
            };
            for key in args.keys().filter(|k| {
                !matches!(
                    k.as_str(),
                    "KERNEL_VERSION" | "KERNEL_SERIES" | "BUILD_IMAGE"
                )
            }) {
                report.unmapped.push(format!("{name}/build-args: {key}"));
            }
            Series {
                version,
                builder: args.get("BUILD_IMAGE").cloned(),
                ..Series::default()
            }
        }
        Err(_) => match version_from_configs(dir, name, report) {
            Some(version) => Series {
                version,
                deprecated: true,
                ..Series::default()
            },
            None => return Ok(None),
        },
    };
    let out = dest.join("kernel").join(name);
    std::fs::create_dir_all(&out)?;
    for entry in sorted(dir)? {
        let file = entry.file_name().to_string_lossy().into_owned();
        match file.as_str() {
            "build-args" => {}
            "deprecated" => series.deprecated = true,
            "patches" => copy_tree(&entry.path(), &out.join("patches"))?,
            _ => match file
                .strip_prefix("config-")
                .and_then(|a| a.parse::<Arch>().ok())
            {
                Some(arch) => {
                    place(
                        &entry.path(),
                        &out.join(format!("config-{}", arch.kernel_name())),
                    )?;
                    series.arches.push(arch);
                }
                None => report.unmapped.push(format!("{name}/{file}")),
            },
        }
    }
    Ok(Some(series))
}

/// LinuxKit's kernel/ kept its shared files (Dockerfiles, build YAMLs, the dbg fragment) at its
/// top until 2025 and under `common/` since: the name a file is found under, `common/` first.
fn shared(lk: &Path, file: &str) -> Option<String> {
    [format!("common/{file}"), file.to_string()]
        .into_iter()
        .find(|rel| lk.join(rel).is_file())
}

/// What a shared file of LinuxKit's kernel/ did, now that kbuild does it.
fn replaced_by(file: &str) -> Option<&'static str> {
    Some(match file {
        "Dockerfile" => {
            "kbuild's own recipe: fetch, patch, configure with the defconfig check, compile, install, package (doc/design.md)"
        }
        "build-kernel.yml" => "kbuild's image packaging; its image: is checked against IMAGE",
        f if f.starts_with("Dockerfile.kconfig") => {
            "`kbuild config update` and `kbuild kconfig split`"
        }
        "update-kernel-yamls.sh" => "`kbuild update-refs`",
        "keys.asc" => {
            "the pins of kernel.kdl and kernel.lock: the Dockerfile checked each tarball's signature against these keys, kbuild checks its sha256"
        }
        ".gitignore" | "README.md" => "nothing to map",
        _ => return None,
    })
}

/// Why a shared file kbuild has no counterpart for is left, and what the user can do.
fn left_because(file: &str) -> String {
    match file {
        "Dockerfile.zfs" | "build-zfs.yml" => "the ZFS module image is built out of tree against \
            a kernel's kernel-dev.tar; kbuild builds in-tree kernels and tools only: keep \
            building it with LinuxKit's Dockerfile.zfs, FROM the kernel image kbuild pushes"
            .into(),
        _ => "kbuild does not know this file: carry over by hand whatever it does".into(),
    }
}

/// One shared file's verdict, unless the Makefile's TOOLS or the dbg variant reported it.
fn shared_verdict(rel: &str, taken: &[String], report: &mut Report) {
    if taken.iter().any(|t| t == rel) {
        return;
    }
    let file = rel.rsplit('/').next().unwrap_or(rel);
    match replaced_by(file) {
        Some(by) => report.notes.push(format!("{rel}: replaced by {by}")),
        None => {
            let tool = file
                .strip_prefix("Dockerfile.")
                .or_else(|| file.strip_prefix("build-")?.strip_suffix(".yml"))
                .filter(|t| *t == "perf" || *t == "bcc");
            match tool {
                Some(tool) => report.unmapped.push(format!(
                    "{rel}: {tool} is not in the Makefile's TOOLS, so LinuxKit does not build it; \
                     add `tool \"{tool}\"` (doc/manifest.md) to build it with kbuild"
                )),
                None => report
                    .unmapped
                    .push(format!("{rel}: {}", left_because(file))),
            }
        }
    }
}

/// Reads the Makefile and common/: org, image, builder, tools and the dbg variant.
fn globals(lk: &Path, dest: &Path, report: &mut Report) -> std::io::Result<Globals> {
    let vars = std::fs::read_to_string(lk.join("Makefile"))
        .map(|t| make_vars(&t))
        .unwrap_or_default();
    let mut g = Globals {
        org: vars
            .get("ORG")
            .cloned()
            .unwrap_or_else(|| "linuxkit".into()),
        image: vars
            .get("IMAGE")
            .cloned()
            .unwrap_or_else(|| "kernel".into()),
        builder: vars.get("IMAGE_BUILDER").cloned(),
        dbg: None,
        perf: false,
        bcc: None,
        tools: Vec::new(),
        taken: Vec::new(),
    };
    if lk.join("Makefile").is_file() {
        report.notes.push(format!(
            "Makefile: ORG={} and IMAGE={} are kernel.kdl's defaults org and image; its targets \
             are kbuild's commands (build: run, push: push, show-tag: tags, list: list)",
            g.org, g.image
        ));
    }
    if let Some(rel) = shared(lk, "build-kernel.yml")
        && let Some(image) = yaml_image(&lk.join(&rel))
        && image != g.image
    {
        report.unmapped.push(format!(
            "{rel}: image `{image}` differs from the Makefile's IMAGE `{}`; kernel.kdl uses IMAGE",
            g.image
        ));
        g.taken.push(rel);
    }
    for tool in vars
        .get("TOOLS")
        .map(|t| t.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        g.tools.push(tool.to_string());
        import_tool(lk, tool, &mut g, report);
    }
    import_common(lk, dest, &mut g, report)?;
    Ok(g)
}

/// One tool of the Makefile's TOOLS: perf and bcc are tools kbuild builds, others are left.
fn import_tool(lk: &Path, tool: &str, g: &mut Globals, report: &mut Report) {
    let yml = shared(lk, &format!("build-{tool}.yml"));
    let dockerfile = shared(lk, &format!("Dockerfile.{tool}"));
    // The files as they are named in this tree, for the report.
    let files: Vec<String> = std::iter::once(format!("TOOLS {tool}"))
        .chain(yml.clone())
        .chain(dockerfile.clone())
        .collect();
    let files = files.join(", ");
    g.taken.extend(yml.iter().chain(&dockerfile).cloned());
    match tool {
        "perf" => {
            g.perf = true;
            report.tools.push(tool.into());
            report.notes.push(format!(
                "{files}: tool \"perf\", built from each \
                 series' kernel tree as {}/{}-perf, against library \"libtraceevent\" \
                 from its own tarball",
                g.org, g.image
            ));
            if let Some(rel) = &yml
                && let Some(image) = yaml_image(&lk.join(rel))
                && image != format!("{}-perf", g.image)
            {
                report.unmapped.push(format!(
                    "{rel}: image `{image}`; kbuild names tool images <image>-<tool>, `{}-perf`",
                    g.image
                ));
            }
        }
        "bcc" => match bcc_release(lk, dockerfile.as_deref()) {
            Ok(tag) => {
                report.tools.push(tool.into());
                report.notes.push(format!(
                    "{files}: tool \"bcc\" from bcc's \
                     {tag} release tarball, built with CMake as {}/{}-bcc, its installed \
                     tree with the kernel's headers and development files",
                    g.org, g.image
                ));
                g.bcc = Some(tag);
            }
            Err(why) => report.unmapped.push(format!(
                "{files}: {why}; declare `tool \"bcc\"` \
                 with the `source` of its release tarball by hand (doc/manifest.md)"
            )),
        },
        other => report.unmapped.push(format!(
            "TOOLS {other}: kbuild knows how to build perf from the kernel tree, not {other}"
        )),
    }
}

/// common/: the dbg variant's fragment and build arguments; anything else there is left.
fn import_common(
    lk: &Path,
    dest: &Path,
    g: &mut Globals,
    report: &mut Report,
) -> std::io::Result<()> {
    let dbg = shared(lk, "config-dbg");
    let args_file = shared(lk, "build-args-debug");
    let args = (args_file.as_ref())
        .and_then(|rel| std::fs::read_to_string(lk.join(rel)).ok())
        .map(|t| build_args(&t))
        .unwrap_or_default();
    g.taken.extend(dbg.iter().chain(&args_file).cloned());
    if let Some(rel) = &dbg {
        place(&lk.join(rel), &dest.join("kernel/common/config-dbg"))?;
        let suffix = args.get("DEBUG").cloned().unwrap_or_else(|| "-dbg".into());
        let files: Vec<&str> = dbg.iter().chain(&args_file).map(String::as_str).collect();
        report.notes.push(format!(
            "{}: variant \"dbg\" (the fragment, \
             CONFIG_PANIC_ON_OOPS off, localversion {suffix})",
            files.join(", ")
        ));
        report.variants.push("dbg".into());
        g.dbg = Some(suffix);
    } else if let Some(rel) = &args_file {
        report.unmapped.push(format!(
            "{rel}: no config-dbg beside it to build a dbg variant from"
        ));
    }
    if let Ok(common) = sorted(&lk.join("common")) {
        for entry in common {
            let rel = format!("common/{}", entry.file_name().to_string_lossy());
            if entry.path().is_dir() {
                report
                    .unmapped
                    .push(format!("{rel}/: {}", left_because("")));
            } else {
                shared_verdict(&rel, &g.taken, report);
            }
        }
    }
    Ok(())
}

/// Imports `linuxkit_kernel` into the workspace `dest` (kernel.kdl and kernel/).
pub fn import(linuxkit_kernel: &Path, dest: &Path) -> std::io::Result<Report> {
    let mut report = Report::default();
    let globals = globals(linuxkit_kernel, dest, &mut report)?;
    let mut flat = flat::import(linuxkit_kernel, dest, &mut report)?;
    let mut series: BTreeMap<String, Series> = std::mem::take(&mut flat.series);
    let mut variant_dirs: Vec<(String, String)> = Vec::new();
    for entry in sorted(linuxkit_kernel)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_dir() {
            if name != "Makefile" && !flat.taken.contains(&name) {
                shared_verdict(&name, &globals.taken, &mut report);
            }
        } else if flat.taken.contains(&name) {
        } else if is_series_name(&name) {
            if let Some(s) = import_series(&path, &name, dest, &mut report)? {
                series.insert(name, s);
            }
        } else if let Some((base, variant)) =
            name.split_once('-').filter(|(b, _)| is_series_name(b))
        {
            variant_dirs.push((base.to_string(), variant.to_string()));
        } else if name != "common" {
            report.unmapped.push(format!("{name}/"));
        }
    }
    for (base, variant) in variant_dirs {
        let Some(s) = series.get_mut(&base) else {
            report.unmapped.push(format!(
                "{base}-{variant}/: no series {base} to apply it to"
            ));
            continue;
        };
        import_variant_dir(linuxkit_kernel, dest, &base, &variant, &mut report)?;
        s.variants.push(variant.clone());
        if !report.variants.contains(&variant) {
            report.variants.push(variant);
        }
    }
    if series.is_empty() {
        return Err(std::io::Error::other(
            "found no kernel series: looked for series folders (`6.6.x/` with `build-args` or \
             configs, LinuxKit since 2023) and for `config-<series>-<arch>` files with the \
             Makefile's `$(call kernel,VERSION,SERIES,…)` lines (before); is this LinuxKit's \
             kernel/ directory?",
        ));
    }
    for (name, s) in series.iter_mut().filter(|(_, s)| s.builder.is_none()) {
        match &globals.builder {
            Some(b) => {
                s.builder = Some(b.clone());
                report
                    .notes
                    .push(format!("{name}: builder {b}, the Makefile's IMAGE_BUILDER"));
            }
            None => report.unmapped.push(format!(
                "{name}: no BUILD_IMAGE and no IMAGE_BUILDER; the default builder is used"
            )),
        }
    }
    std::fs::write(
        dest.join("kernel.kdl"),
        manifest(&series, &globals, &report.variants, dest),
    )?;
    report.series = series.keys().cloned().collect();
    Ok(report)
}

/// The release Dockerfile.bcc checks out (`ENV BCC_COMMIT=v0.29.1`): a release tag, for which
/// bcc publishes a tarball with its submodules; a commit has none, and Alpine's packages (how
/// LinuxKit has installed bcc since 2025) are no source kbuild can build.
fn bcc_release(lk: &Path, dockerfile: Option<&str>) -> Result<String, String> {
    let rel = dockerfile.ok_or("there is no Dockerfile.bcc (at the top or in common/)")?;
    let text = std::fs::read_to_string(lk.join(rel))
        .map_err(|e| format!("{rel} cannot be read ({})", e.kind()))?;
    let from_packages = text.lines().any(|l| {
        let l = l.trim();
        l.contains("apk add") && l.split_whitespace().any(|w| w.starts_with("bcc"))
    });
    let commit = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .find_map(|l| l.trim().strip_prefix("BCC_COMMIT"))
        .map(|v| v.trim_start_matches(['=', ' ']).trim().trim_matches('"'));
    let commit = match commit {
        Some(commit) => commit,
        None if from_packages => {
            return Err(format!(
                "{rel} installs bcc from Alpine's packages (`apk add bcc…`), which kbuild cannot \
                 put in a tool image: it builds tools from their source"
            ));
        }
        None => return Err(format!("{rel} sets no BCC_COMMIT")),
    };
    let version = commit.strip_prefix('v').unwrap_or("");
    if semver::Version::parse(version).is_err() {
        return Err(format!(
            "BCC_COMMIT `{commit}` is not a release tag (vX.Y.Z), and only releases have a tarball"
        ));
    }
    Ok(commit.to_string())
}

/// bcc as LinuxKit's Dockerfile.bcc builds it, from the release tarball of `tag`.
fn bcc_tool(tag: &str) -> String {
    format!(
        "tool \"bcc\" {{\n    source \"https://github.com/iovisor/bcc/releases/download/{tag}/bcc-src-with-submodule.tar.gz\"\n    \
         dir \".\"\n    build \"cmake\"\n    binary \"usr/share/bcc/tools/execsnoop\"\n    \
         kernel-files #true\n    args \"-DPYTHON_CMD=python3\" \"-DENABLE_EXAMPLES=OFF\" \"-DENABLE_TESTS=OFF\"\n}}\n\n"
    )
}

/// kernel.kdl's perf tool, as the repository's own manifest declares it.
/// perf as LinuxKit's Dockerfile.perf builds it, against libtraceevent from its own release
/// tarball (pinned in kernel.lock by the first fetch).
const PERF: &str = r#"tool "libtraceevent" {
    library #true
    source "https://git.kernel.org/pub/scm/libs/libtrace/libtraceevent.git/snapshot/libtraceevent-1.8.4.tar.gz"
    dir "."
    args "libdir_relative=lib" "pkgconfig_dir=/usr/lib/pkgconfig" "install"
}

tool "perf" {
    dir "tools/perf"
    binary "perf"
    uses "libtraceevent"
    args "LDFLAGS=-static" "NO_JVMTI=1" "LIBTRACEEVENT_DYNAMIC=1" "perf"
    args "NO_LIBELF=1" arch="aarch64"
    args "NO_LIBELF=1" arch="riscv64"
    strip #true
}

"#;

fn manifest(
    series: &BTreeMap<String, Series>,
    globals: &Globals,
    variants: &[String],
    dest: &Path,
) -> String {
    let mut out = String::from(
        "// Imported from a LinuxKit kernel/ directory by `kbuild import-linuxkit`.\n\n",
    );
    let _ = write!(
        out,
        "defaults {{\n    org \"{}\"\n    image \"{}\"\n    localversion \"-linuxkit\"\n}}\n\n",
        globals.org, globals.image
    );
    // Variants with their own folders apply first (their patches before the series'), then dbg.
    for variant in variants.iter().filter(|v| *v != "dbg") {
        let _ = write!(
            out,
            "variant \"{variant}\" {{\n    patches \"kernel/{{series}}-{variant}/patches\"\n"
        );
        let _ = write!(
            out,
            "    fragment \"kernel/{{series}}-{variant}/config-{{arch}}\"\n    localversion \"-{variant}\"\n}}\n\n"
        );
    }
    if let Some(suffix) = &globals.dbg {
        let _ = write!(
            out,
            "variant \"dbg\" {{\n    fragment \"kernel/common/config-dbg\"\n    force-off \"CONFIG_PANIC_ON_OOPS\"\n    localversion \"{suffix}\"\n    outputs \"vmlinux\"\n}}\n\n"
        );
    }
    if globals.perf {
        out.push_str(PERF);
    }
    if let Some(tag) = &globals.bcc {
        out.push_str(&bcc_tool(tag));
    }
    // Newest series first, in version order (6.12.x before 6.6.x).
    let mut ordered: Vec<(&String, &Series)> = series.iter().collect();
    ordered.sort_by_key(|(_, s)| std::cmp::Reverse(semver::Version::parse(&s.version).ok()));
    for (name, s) in ordered {
        series_node(&mut out, name, s, globals, dest);
    }
    out
}

fn series_node(out: &mut String, name: &str, s: &Series, globals: &Globals, dest: &Path) {
    let major = s.version.split('.').next().unwrap_or("6");
    let _ = writeln!(out, "series \"{name}\" {{\n    version \"{}\"", s.version);
    let _ = writeln!(
        out,
        "    source \"https://cdn.kernel.org/pub/linux/kernel/v{major}.x/linux-{}.tar.xz\"",
        s.version
    );
    let arches: Vec<String> = s
        .arches
        .iter()
        .map(|a| format!("\"{}\"", a.kernel_name()))
        .collect();
    let _ = writeln!(out, "    arches {}", arches.join(" "));
    if let Some(builder) = &s.builder {
        let _ = writeln!(out, "    builder \"{builder}\"");
    }
    let has_dbg = globals.dbg.is_some();
    let mut sets: Vec<String> = Vec::new();
    if has_dbg {
        sets.push("dbg".into());
    }
    for v in &s.variants {
        // A variant's fragment must exist for every arch of the series to be built.
        let complete = s.arches.iter().all(|a| {
            dest.join(format!("kernel/{name}-{v}/config-{}", a.kernel_name()))
                .is_file()
        });
        if complete {
            sets.push(v.clone());
            if has_dbg {
                sets.push(format!("{v}-dbg"));
            }
        }
    }
    if !sets.is_empty() {
        let quoted: Vec<String> = sets.iter().map(|s| format!("\"{s}\"")).collect();
        let _ = writeln!(out, "    variants {}", quoted.join(" "));
    }
    let mut tools = Vec::new();
    if globals.perf {
        tools.push("\"perf\"");
    }
    if globals.bcc.is_some() {
        tools.push("\"bcc\"");
    }
    if !tools.is_empty() {
        let _ = writeln!(out, "    tools {}", tools.join(" "));
    }
    if s.deprecated {
        out.push_str("    deprecated\n");
    }
    out.push_str("}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names() {
        assert!(is_series_name("6.6.x") && is_series_name("5.15.x"));
        assert!(!is_series_name("5.11.x-rt") && !is_series_name("common"));
    }

    #[test]
    fn makefile_variables() {
        let vars = make_vars(
            "# Name and Org on Hub\nORG?=myorg\nIMAGE ?= kern # trailing\nTOOLS=bcc perf\nTOOLS += zfs\n\
             HASH:=$(shell git ls-tree)\nbuild-%: x\n\tORG=inrecipe\n",
        );
        assert_eq!(vars["ORG"], "myorg");
        assert_eq!(vars["IMAGE"], "kern");
        assert_eq!(vars["TOOLS"], "bcc perf zfs");
        assert!(!vars.contains_key("HASH") && !vars.contains_key("build-%: x\n\tORG"));
    }

    #[test]
    fn config_header_versions() {
        let config = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 5.11.4 Kernel Configuration\n#\n";
        assert_eq!(header_version(config).as_deref(), Some("5.11.4"));
        assert_eq!(
            header_version("# Linux/arm64 6.6.13 Kernel Configuration\n").as_deref(),
            Some("6.6.13")
        );
        assert_eq!(
            header_version("# Linux/x86 5.11 Kernel Configuration\n"),
            None
        );
        assert_eq!(header_version("CONFIG_X=y\n"), None);
    }
}
