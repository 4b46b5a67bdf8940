//! The maintainer commands of the command line: update-refs, kconfig, patches, bump, new-series,
//! import-linuxkit.

use std::path::PathBuf;

use miette::IntoDiagnostic;

use super::{
    Command, ConfigCommand, KconfigCommand, PatchesCommand, Workspace, engine, open_cache,
};
use crate::exec::Host;
use crate::label::{Label, TargetKind, all_targets};
use crate::maint::{bump, import, kconfig_split, patch_lint, update_refs};
use crate::model::Model;
use crate::statcache::StatCache;

pub fn update_refs(ws: &Workspace, paths: &[PathBuf], check: bool) -> miette::Result<i32> {
    let model = ws.model()?;
    let mut stat = StatCache::open(&ws.cache_dir)?;
    let latest = update_refs::Latest::of(model, &mut stat)?;
    // The command line's view of saved state is stderr.
    if let Err(e) = stat.save() {
        eprintln!("{e}");
    }
    let selection =
        update_refs::tracked_files(&ws.root, paths).map_err(|e| miette::miette!("{e}"))?;
    for (file, why) in &selection.skipped {
        eprintln!("{file}: skipped: {why}");
    }
    // Every file is read and rewritten in memory first: a file that cannot be read stops the
    // command before anything is written, so it never leaves half a change.
    let mut rewritten = Vec::new();
    for file in &selection.files {
        let path = ws.root.join(file);
        let text = std::fs::read(&path).map_err(|e| {
            let help = if e.kind() == std::io::ErrorKind::NotFound {
                "git tracks it but it is gone: restore it (`git checkout -- FILE`) or `git rm` it"
            } else {
                "make it readable"
            };
            miette::miette!(help = help, "{file}: {e}; nothing was changed")
        })?;
        rewritten.push((path, update_refs::rewrite(file, &text, model, &latest)));
    }
    let mut changes = Vec::new();
    let mut pinned = Vec::new();
    for (path, found) in rewritten {
        if !found.changes.is_empty() && !check {
            crate::fsutil::replace_keeping_mode(&path, &found.bytes)
                .map_err(|e| miette::miette!("{}: {e}", path.display()))?;
        }
        changes.extend(found.changes);
        pinned.extend(found.pinned);
    }
    for c in &changes {
        println!(
            "{}:{}: -{}\n{}:{}: +{}",
            c.file, c.line, c.old, c.file, c.line, c.new
        );
    }
    for p in &pinned {
        eprintln!(
            "{}:{}: left alone: {} is pinned by its digest, which names one image; \
             update the tag and the digest together by hand, or drop the digest",
            p.file, p.line, p.reference
        );
    }
    let verb = if check { "would change" } else { "changed" };
    eprintln!(
        "update-refs: {verb} {} reference(s), {} digest-pinned left alone",
        changes.len(),
        pinned.len()
    );
    let named_but_skipped = selection.skipped.iter().any(|(f, _)| {
        paths
            .iter()
            .any(|p| ws.root.join(p).canonicalize().ok() == ws.root.join(f).canonicalize().ok())
    });
    Ok(i32::from(
        (check && !changes.is_empty()) || named_but_skipped,
    ))
}

pub fn kconfig_split(inputs: &[PathBuf], out: &std::path::Path) -> miette::Result<i32> {
    let done = kconfig_split::split(inputs, out).map_err(|e| miette::miette!("{e}"))?;
    for r in &done.repeats {
        eprintln!(
            "warning: {}:{}: {} was set on line {} already; the last setting wins, as in Kconfig",
            r.file.display(),
            r.again,
            r.symbol,
            r.first
        );
    }
    for path in &done.written {
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}

pub fn kconfig_diff(a: &std::path::Path, b: &std::path::Path) -> miette::Result<i32> {
    let read = |p| kconfig_split::read(p).map_err(|e| miette::miette!("{e}"));
    let diff = kconfig_split::diff(&read(a)?, &read(b)?);
    print!("{}", kconfig_split::render_diff(&diff));
    Ok(i32::from(!diff.is_empty()))
}

/// Every patch directory of the named series (all when none are named).
fn patch_dirs(model: &Model, series: &[String]) -> Vec<String> {
    let targets: Vec<Label> = all_targets(model)
        .into_iter()
        .filter(|t| series.is_empty() || series.contains(&t.series))
        .collect();
    crate::plan::patch_dirs(model, &targets)
}

pub fn patch_findings(
    ws: &Workspace,
    series: &[String],
) -> miette::Result<Vec<patch_lint::Finding>> {
    let model = ws.model()?;
    for name in series {
        match model.series(name) {
            None => {
                let known: Vec<&str> = model.series.iter().map(|s| s.name.as_str()).collect();
                miette::bail!(
                    "kernel.kdl has no series `{name}` (it has {}): name one of those",
                    known.join(", ")
                );
            }
            Some(s) if s.deprecated => miette::bail!(
                "series `{name}` is deprecated: it builds nothing, so no patch of it is applied \
                 or checked; drop `deprecated` in kernel.kdl to check its patches"
            ),
            Some(_) => {}
        }
    }
    Ok(patch_dirs(model, series)
        .iter()
        .flat_map(|dir| patch_lint::check_dir(&ws.root, dir))
        .collect())
}

/// One line that says how many findings fail the check and how many are advice.
pub fn findings_summary(findings: &[patch_lint::Finding]) -> String {
    let (errors, advice) = patch_lint::count(findings);
    format!("{errors} error(s), which fail the check; {advice} advice, which does not")
}

pub fn patches_check(ws: &Workspace, series: &[String]) -> miette::Result<i32> {
    let findings = patch_findings(ws, series)?;
    for f in &findings {
        println!("{f}");
    }
    eprintln!("patches check: {}", findings_summary(&findings));
    Ok(i32::from(patch_lint::count(&findings).0 > 0))
}

/// Resolves the plain configs of `series` with the (new) source and shows, per arch, how the
/// committed config drifts and which options are new; `write` puts the resolved configs in place.
fn drift(ws: &Workspace, series: &str, write: bool) -> miette::Result<i32> {
    let model = crate::manifest::load(&ws.root)?;
    let targets: Vec<Label> = all_targets(&model)
        .into_iter()
        .filter(|t| {
            t.series == series && matches!(&t.kind, TargetKind::Kernel(set) if set.is_plain())
        })
        .collect();
    let (graph, ids) = crate::plan::lower_configure(&model, &targets)?;
    let cache = open_cache(ws)?;
    let report = engine(ws, &cache, &Host, super::num_jobs(None), true).run(&graph)?;
    eprint!("{}", super::render::failures(&graph, &report.status));
    let series_model = model.series(series).expect("the series was just edited");
    let mut code = 0;
    for (target, id) in targets.iter().zip(ids) {
        let Some(manifest) = report.status[id.index()]
            .key()
            .and_then(|k| cache.lookup(k))
        else {
            code = 1;
            continue;
        };
        let resolved_path = cache.tree(&manifest)?.join("config");
        let committed_path = ws.root.join(series_model.config_path(target.arch));
        let committed = std::fs::read_to_string(&committed_path).into_diagnostic()?;
        let resolved = std::fs::read_to_string(&resolved_path).into_diagnostic()?;
        let committed_config = crate::kconfig::parse(&committed);
        let full = committed_config.full;
        let mut diff = crate::kconfig::diff(&committed_config, &crate::kconfig::parse(&resolved));
        if !full {
            // A minimal config leaves every option it does not name to its default.
            diff.retain(|m| m.wanted.is_some());
        }
        println!("{target}: {} option(s) drift", diff.len());
        for m in &diff {
            println!("  {m}");
        }
        let tree = graph
            .action(id)
            .deps
            .iter()
            .find(|d| d.role == crate::action::Role::Tree)
            .map(|d| d.id);
        if !full {
            println!(
                "  new options: not listed for a minimal config (make listnewconfig would name \
                 every option it leaves to its default)"
            );
        } else if let Some(tree) = tree
            .and_then(|t| report.status[t.index()].key())
            .and_then(|k| cache.lookup(k))
        {
            let new = list_new_config(&model, &cache.tree(&tree)?.join("tree"), target, &committed);
            println!(
                "  new options: {}",
                if new.is_empty() {
                    "none".to_string()
                } else {
                    new.join(" ")
                }
            );
        }
        if write && full {
            std::fs::write(&committed_path, keep_header_arch(&committed, &resolved))
                .into_diagnostic()?;
            println!("  wrote {}", series_model.config_path(target.arch));
        } else if write {
            println!(
                "  not written: {} is a minimal config, which kbuild does not rewrite; \
                 edit it from the drift above",
                series_model.config_path(target.arch)
            );
        }
    }
    Ok(code)
}

/// The resolved config with the arch of the committed one's `# Linux/<arch> <version> Kernel
/// Configuration` line: LinuxKit's configs say `Linux/x86` (made with ARCH=x86) where kbuild's
/// ARCH=x86_64 writes `Linux/x86_64`, and the header is not worth a diff.
fn keep_header_arch(committed: &str, resolved: &str) -> String {
    let arch_of = |text: &str| {
        text.lines()
            .take(5)
            .find_map(|l| l.strip_prefix("# Linux/"))
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_string)
    };
    match (arch_of(committed), arch_of(resolved)) {
        (Some(keep), Some(got)) if keep != got => {
            resolved.replacen(&format!("# Linux/{got} "), &format!("# Linux/{keep} "), 1)
        }
        _ => resolved.to_string(),
    }
}

/// `make listnewconfig` on the committed config: the symbols the new tree asks about.
fn list_new_config(
    model: &Model,
    tree: &std::path::Path,
    target: &Label,
    committed: &str,
) -> Vec<String> {
    let Ok(obj) = tempfile::tempdir() else {
        return Vec::new();
    };
    if std::fs::write(obj.path().join(".config"), committed).is_err() {
        return Vec::new();
    }
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(tree)
        .arg(format!("O={}", obj.path().display()))
        .arg(format!("ARCH={}", target.arch.make_arch()))
        .arg(format!(
            "CROSS_COMPILE={}",
            model.cross_compile(target.arch)
        ))
        .arg("listnewconfig")
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .map(String::from)
        .collect()
}

pub fn bump(ws: &Workspace, series: &str, version: &str, write: bool) -> miette::Result<i32> {
    let old = bump::bump(&ws.root, series, version)?;
    eprintln!("{series}: {old} → {version} in kernel.kdl");
    drift(ws, series, write)
}

pub fn new_series(
    ws: &Workspace,
    new: &str,
    from: &str,
    version: &str,
    write: bool,
) -> miette::Result<i32> {
    bump::new_series(&ws.root, new, from, version)?;
    eprintln!(
        "{new}: added at {version}, configs and patches copied from {from} (its variants' folders too)"
    );
    drift(ws, new, write)
}

pub fn import_linuxkit(ws_root: &std::path::Path, dir: &std::path::Path) -> miette::Result<i32> {
    if ws_root.join(crate::manifest::MANIFEST_FILE).exists() {
        miette::bail!(
            help = "import into a directory without a kernel.kdl with -C DIR",
            "{} already has a kernel.kdl",
            ws_root.display()
        );
    }
    let report = import::import(dir, ws_root).into_diagnostic()?;
    let listed = |names: &[String]| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    eprintln!("imported series: {}", listed(&report.series));
    eprintln!("variants: {}", listed(&report.variants));
    eprintln!("tools: {}", listed(&report.tools));
    for what in &report.notes {
        println!("mapped: {what}");
    }
    for what in &report.unmapped {
        println!("not mapped: {what}");
    }
    Ok(0)
}

/// Runs the configure actions of plain targets and copies each resolved config over the
/// committed full config it came from.
pub fn config_update(ws: &Workspace, labels: &[String]) -> miette::Result<i32> {
    let model = ws.model()?;
    let targets = crate::label::resolve(model, labels)?;
    for target in &targets {
        if target.variants().is_none_or(|set| !set.is_plain()) {
            let help = format!("name the plain target, //{}:{}", target.series, target.arch);
            miette::bail!(
                help = help,
                "`{target}` is not a plain kernel: variants add fragments, and only the series config is written back"
            );
        }
    }
    let (graph, ids) = crate::plan::lower_configure(model, &targets)?;
    let cache = open_cache(ws)?;
    let report = engine(ws, &cache, &Host, super::num_jobs(None), false).run(&graph)?;
    eprint!("{}", super::render::failures(&graph, &report.status));
    for (target, id) in targets.iter().zip(ids) {
        let Some(manifest) = report.status[id.index()]
            .key()
            .and_then(|k| cache.lookup(k))
        else {
            return Ok(1);
        };
        let resolved = cache.tree(&manifest)?.join("config");
        let series = model
            .series(&target.series)
            .expect("targets come from the model");
        let committed = ws.root.join(series.config_path(target.arch));
        let text = std::fs::read_to_string(&committed).into_diagnostic()?;
        if !crate::kconfig::parse(&text).full {
            miette::bail!(
                help = "edit the minimal defconfig by hand; only a full config is checked option by option",
                "`{}` is a minimal defconfig",
                committed.display()
            );
        }
        std::fs::copy(&resolved, &committed).into_diagnostic()?;
        eprintln!(
            "wrote the resolved config of {target} to {}",
            series.config_path(target.arch)
        );
    }
    Ok(0)
}

/// `kbuild pin`: one line per series saying what changed where.
pub fn pin(ws: &Workspace, series: &[String]) -> miette::Result<i32> {
    use crate::manifest::packages::Renew;
    let renew = if series.is_empty() {
        Renew::All
    } else {
        Renew::Series(series)
    };
    // Not the memoized model: the point is to look at every source again.
    let model = crate::manifest::load_renewing(&ws.root, renew)?;
    for pinned in crate::maint::pin::pin(&ws.root, &model, series)? {
        let file = pinned.home.file();
        match pinned.old {
            Some(old) if old == pinned.new => {
                println!(
                    "{}: {} unchanged (sha256 {})",
                    pinned.series, pinned.url, pinned.new
                )
            }
            Some(old) => println!(
                "{}: {} re-pinned in {file}: sha256 {old} -> {}",
                pinned.series, pinned.url, pinned.new
            ),
            None => println!(
                "{}: {} pinned in {file}: sha256 {}",
                pinned.series, pinned.url, pinned.new
            ),
        }
    }
    Ok(0)
}

/// Answers the maintainer commands, or `None` for another command.
pub fn dispatch(ws: &Workspace, command: &Command) -> Option<miette::Result<i32>> {
    Some(match command {
        Command::Config(ConfigCommand::Update { labels }) => config_update(ws, labels),
        Command::UpdateRefs { paths, check } => update_refs(ws, paths, *check),
        Command::Kconfig(KconfigCommand::Split { configs, out }) => kconfig_split(configs, out),
        Command::Kconfig(KconfigCommand::Diff { a, b }) => kconfig_diff(a, b),
        Command::Patches(PatchesCommand::Check { series }) => patches_check(ws, series),
        Command::Bump {
            series,
            version,
            write,
        } => bump(ws, series, version, *write),
        Command::NewSeries {
            new,
            from,
            version,
            write,
        } => new_series(ws, new, from, version, *write),
        Command::ImportLinuxkit { linuxkit } => import_linuxkit(&ws.root, linuxkit),
        Command::Pin { series } => pin(ws, series),
        _ => return None,
    })
}

/// `kbuild check`: the manifest, then the patches' format.
pub fn check(ws: &Workspace) -> miette::Result<i32> {
    let model = ws.model()?;
    let findings = patch_findings(ws, &[])?;
    for f in &findings {
        println!("{f}");
    }
    let targets = all_targets(model);
    let patches = if findings.is_empty() {
        String::new()
    } else {
        format!("; patches: {}", findings_summary(&findings))
    };
    if crate::maint::patch_lint::count(&findings).0 > 0 {
        eprintln!("kernel.kdl is valid, but the patch errors above need fixing{patches}");
        return Ok(2);
    }
    eprintln!(
        "kernel.kdl is valid: {} series, {} targets{patches}",
        model.series.len(),
        targets.len()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_header_arch_is_kept() {
        let committed = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.6.13 Kernel Configuration\n#\nCONFIG_A=y\n";
        let resolved = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.6.71 Kernel Configuration\n#\nCONFIG_A=y\n";
        assert_eq!(
            super::keep_header_arch(committed, resolved),
            resolved.replace("Linux/x86_64 6.6.71", "Linux/x86 6.6.71")
        );
        assert_eq!(super::keep_header_arch("CONFIG_A=y\n", resolved), resolved);
    }
}
