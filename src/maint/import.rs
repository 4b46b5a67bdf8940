//! `kbuild import-linuxkit DIR`: turns a LinuxKit `kernel/` directory into kernel.kdl and kernel/.
//!
//! Mapped: series folders (`build-args` with KERNEL_VERSION, KERNEL_SERIES and BUILD_IMAGE,
//! `config-<arch>`, `patches/`, a `deprecated` marker), `common/config-dbg` (the dbg variant),
//! and variant folders `<series>-<variant>` (patches applied first, per-arch config fragments).
//! Everything else is reported as not mapped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::arch::Arch;

/// What an import did and what it could not map.
#[derive(Debug, Default)]
pub struct Report {
    pub series: Vec<String>,
    pub variants: Vec<String>,
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

fn build_args(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn is_series_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    matches!(parts.as_slice(), [a, b, "x"] if a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Reads one series folder, copying what it maps into `dest/kernel/<name>`.
fn import_series(
    dir: &Path,
    name: &str,
    dest: &Path,
    report: &mut Report,
) -> std::io::Result<Option<Series>> {
    let Ok(text) = std::fs::read_to_string(dir.join("build-args")) else {
        report
            .unmapped
            .push(format!("{name}/: no build-args, so no version"));
        return Ok(None);
    };
    let args = build_args(&text);
    let Some(version) = args.get("KERNEL_VERSION").cloned() else {
        report
            .unmapped
            .push(format!("{name}/build-args: no KERNEL_VERSION"));
        return Ok(None);
    };
    let mut series = Series {
        version,
        builder: args.get("BUILD_IMAGE").cloned(),
        ..Series::default()
    };
    for key in args.keys().filter(|k| {
        !matches!(
            k.as_str(),
            "KERNEL_VERSION" | "KERNEL_SERIES" | "BUILD_IMAGE"
        )
    }) {
        report.unmapped.push(format!("{name}/build-args: {key}"));
    }
    let out = dest.join("kernel").join(name);
    std::fs::create_dir_all(&out)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
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
                    std::fs::copy(
                        entry.path(),
                        out.join(format!("config-{}", arch.kernel_name())),
                    )?;
                    series.arches.push(arch);
                }
                None => report.unmapped.push(format!("{name}/{file}")),
            },
        }
    }
    Ok(Some(series))
}

/// Imports `linuxkit_kernel` into the workspace `dest` (kernel.kdl and kernel/).
pub fn import(linuxkit_kernel: &Path, dest: &Path) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut variant_dirs: Vec<(String, String)> = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(linuxkit_kernel)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = linuxkit_kernel.join(name);
        if !path.is_dir() {
            report.unmapped.push(name.clone());
        } else if is_series_name(name) {
            if let Some(s) = import_series(&path, name, dest, &mut report)? {
                series.insert(name.clone(), s);
            }
        } else if let Some((base, variant)) =
            name.split_once('-').filter(|(b, _)| is_series_name(b))
        {
            variant_dirs.push((base.to_string(), variant.to_string()));
        } else if name != "common" {
            report.unmapped.push(format!("{name}/"));
        }
    }
    let dbg = linuxkit_kernel.join("common/config-dbg");
    let has_dbg = dbg.is_file();
    if has_dbg {
        std::fs::create_dir_all(dest.join("kernel/common"))?;
        std::fs::copy(&dbg, dest.join("kernel/common/config-dbg"))?;
        report.variants.push("dbg".into());
    }
    if let Ok(common) = std::fs::read_dir(linuxkit_kernel.join("common")) {
        for e in common.flatten().filter(|e| e.file_name() != "config-dbg") {
            report
                .unmapped
                .push(format!("common/{}", e.file_name().to_string_lossy()));
        }
    }
    for (base, variant) in variant_dirs {
        let Some(s) = series.get_mut(&base) else {
            report.unmapped.push(format!(
                "{base}-{variant}/: no series {base} to apply it to"
            ));
            continue;
        };
        copy_tree(
            &linuxkit_kernel.join(format!("{base}-{variant}")),
            &dest.join("kernel").join(format!("{base}-{variant}")),
        )?;
        s.variants.push(variant.clone());
        if !report.variants.contains(&variant) {
            report.variants.push(variant);
        }
    }
    std::fs::write(
        dest.join("kernel.kdl"),
        manifest(&series, has_dbg, &report.variants, dest),
    )?;
    report.series = series.keys().cloned().collect();
    Ok(report)
}

fn manifest(
    series: &BTreeMap<String, Series>,
    has_dbg: bool,
    variants: &[String],
    dest: &Path,
) -> String {
    let mut out = String::from(
        "// Imported from a LinuxKit kernel/ directory by `kbuild import-linuxkit`.\n\n",
    );
    out.push_str("defaults {\n    org \"linuxkit\"\n    image \"kernel\"\n    localversion \"-linuxkit\"\n}\n\n");
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
    if has_dbg {
        out.push_str("variant \"dbg\" {\n    fragment \"kernel/common/config-dbg\"\n    force-off \"CONFIG_PANIC_ON_OOPS\"\n    localversion \"-dbg\"\n    outputs \"vmlinux\"\n}\n\n");
    }
    // Newest series first, in version order (6.12.x before 6.6.x).
    let mut ordered: Vec<(&String, &Series)> = series.iter().collect();
    ordered.sort_by_key(|(_, s)| std::cmp::Reverse(semver::Version::parse(&s.version).ok()));
    for (name, s) in ordered {
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
        if s.deprecated {
            out.push_str("    deprecated\n");
        }
        out.push_str("}\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names() {
        assert!(is_series_name("6.6.x") && is_series_name("5.15.x"));
        assert!(!is_series_name("5.11.x-rt") && !is_series_name("common"));
    }
}
