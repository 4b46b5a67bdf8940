//! Configure and check: resolve a config with the kernel's own Kconfig, then hold it to account.

use std::fmt::Write as _;
use std::io::Write as _;

use super::{Ctx, RecipeError, io};
use crate::action::{CheckSpec, ConfigSpec, Role};
use crate::kconfig::{self, Config};

/// The requested config: the committed file, then fragments, then what the variant forces.
fn requested_text(ctx: &Ctx, spec: &ConfigSpec) -> Result<String, RecipeError> {
    let mut text = std::fs::read_to_string(ctx.input(&spec.config))
        .map_err(io(format!("reading {}", spec.config)))?;
    for fragment in &spec.fragments {
        text.push('\n');
        text.push_str(
            &std::fs::read_to_string(ctx.input(fragment))
                .map_err(io(format!("reading {fragment}")))?,
        );
    }
    text.push('\n');
    text.push_str(&overrides(spec));
    Ok(text)
}

/// The settings kbuild itself imposes; later lines win in Kconfig.
fn overrides(spec: &ConfigSpec) -> String {
    let mut text = String::new();
    for symbol in &spec.force_off {
        let _ = writeln!(text, "{}", kconfig::render(symbol, "n"));
    }
    let _ = writeln!(text, "CONFIG_LOCALVERSION=\"{}\"", spec.localversion);
    let _ = writeln!(text, "# CONFIG_LOCALVERSION_AUTO is not set");
    text
}

/// Resolves the requested config with `make olddefconfig` in a kept directory of its own, so that
/// Kconfig's host programs are built once rather than on every config change. Nothing else of
/// the directory can reach the result: `.config` is written whole before each run.
pub fn configure(ctx: &Ctx, spec: &ConfigSpec, dir: &str) -> Result<(), RecipeError> {
    let obj = ctx.build_root.join(dir);
    std::fs::create_dir_all(&obj).map_err(io("creating the config directory"))?;
    let lock = std::fs::File::create(obj.with_extension("lock"))
        .map_err(io("creating the config lock"))?;
    lock.lock().map_err(io("locking the config directory"))?;
    std::fs::write(obj.join(".config"), requested_text(ctx, spec)?)
        .map_err(io("writing .config"))?;
    let tree = ctx.dep(Role::Tree).join("tree");
    ctx.run(
        ctx.make(&tree, &obj)
            .hold(std::os::fd::AsRawFd::as_raw_fd(&lock))
            .arg("olddefconfig")
            .output(obj.join(".config")),
    )?;
    std::fs::copy(obj.join(".config"), ctx.out.join("config"))
        .map_err(io("saving the resolved config"))?;
    Ok(())
}

pub fn check(ctx: &Ctx, check: &CheckSpec) -> Result<(), RecipeError> {
    let spec = &check.config;
    let resolved_path = ctx.dep(Role::Config).join("config");
    let resolved = kconfig::parse(
        &std::fs::read_to_string(&resolved_path).map_err(io("reading the resolved config"))?,
    );
    let committed = kconfig::parse(
        &std::fs::read_to_string(ctx.input(&spec.config))
            .map_err(io(format!("reading {}", spec.config)))?,
    );
    let mut report = String::new();
    if spec.exact && committed.full {
        exact_check(ctx, spec, &committed, &resolved, &resolved_path)?;
        let _ = writeln!(report, "exact: {} matches option by option", spec.config);
    }
    // Requests, in the order they apply: a minimal defconfig is a list of requests too; a full
    // config is not (it records every default), so only the exact check judges it.
    let mut sources: Vec<(String, Config)> = Vec::new();
    if !committed.full {
        sources.push((spec.config.clone(), committed));
    }
    for fragment in &spec.fragments {
        let text = std::fs::read_to_string(ctx.input(fragment))
            .map_err(io(format!("reading {fragment}")))?;
        sources.push((fragment.clone(), kconfig::parse(&text)));
    }
    for i in 0..sources.len() {
        let mut own = sources[i].1.clone();
        // A request that a later source overrides is not this source's to answer for.
        own.settings.retain(|symbol, _| {
            sources[i + 1..]
                .iter()
                .all(|(_, later)| !later.settings.contains_key(symbol))
        });
        own.settings.retain(|symbol, _| {
            !spec.force_off.contains(symbol) && symbol != "CONFIG_LOCALVERSION"
        });
        fragment_check(ctx, &sources[i].0, &own, &resolved)?;
        let _ = writeln!(report, "{}: every request resolved", sources[i].0);
    }
    for file in &check.requires {
        requirement_check(ctx, file, &resolved)?;
        let _ = writeln!(report, "{file}: every requirement met");
    }
    // The report goes to the log; the output is a constant, because compile depends on the check
    // only to wait for it: which checks ran must not make compile run again.
    let _ = write!(&*ctx.log, "{report}");
    std::fs::write(ctx.out.join("passed"), "").map_err(io("writing the check result"))
}

/// The resolved config must equal the committed one plus kbuild's own overrides.
fn exact_check(
    ctx: &Ctx,
    spec: &ConfigSpec,
    committed: &Config,
    resolved: &Config,
    resolved_path: &std::path::Path,
) -> Result<(), RecipeError> {
    let mut wanted = committed.clone();
    for (symbol, setting) in kconfig::parse(&overrides(spec)).settings {
        wanted.settings.insert(symbol, setting);
    }
    let mismatches = kconfig::diff(&wanted, resolved);
    if mismatches.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = mismatches
        .iter()
        .take(40)
        .map(|m| format!("  {m}"))
        .collect();
    let more = mismatches.len().saturating_sub(40);
    let more = if more > 0 {
        format!("\n  … and {more} more")
    } else {
        String::new()
    };
    Err(RecipeError::failed(
        format!(
            "`{}` is not what Kconfig resolves ({} options differ):\n{}{more}",
            spec.config,
            mismatches.len(),
            lines.join("\n")
        ),
        format!(
            "if the resolved values are what you want, write them back: kbuild config update {} (or cp {} {})",
            ctx.action
                .labels
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            resolved_path.display(),
            spec.config
        ),
    ))
}

/// Every value `fragment` requests must survive resolution.
fn fragment_check(
    ctx: &Ctx,
    name: &str,
    fragment: &Config,
    resolved: &Config,
) -> Result<(), RecipeError> {
    let unmet = kconfig::unmet(fragment, resolved);
    if unmet.is_empty() {
        return Ok(());
    }
    let tree = ctx.dep(Role::Tree).join("tree");
    let lines: Vec<String> = unmet
        .iter()
        .map(|(symbol, want, got)| {
            let got = got.clone().unwrap_or_else(|| "absent".into());
            let asked = kconfig::render(symbol, &want.value);
            format!(
                "  {name}:{}: {asked} requested, resolved {got}{}",
                want.line,
                why_dropped(&tree, symbol, resolved)
            )
        })
        .collect();
    Err(RecipeError::failed(
        format!(
            "Kconfig dropped {} requested value(s):\n{}",
            unmet.len(),
            lines.join("\n")
        ),
        "Kconfig silently drops a value whose dependencies are off: enable them too, or drop the request",
    ))
}

/// Every setting the requirement file `name` states must hold in the resolved config (`=m`
/// is met by a module or built in); each one that does not is named with Kconfig's reason.
fn requirement_check(ctx: &Ctx, name: &str, resolved: &Config) -> Result<(), RecipeError> {
    let text = std::fs::read_to_string(ctx.input(name)).map_err(io(format!("reading {name}")))?;
    let required = kconfig::parse(&text);
    let tree = ctx.dep(Role::Tree).join("tree");
    let lines: Vec<String> = (required.settings.iter())
        .filter_map(|(symbol, want)| {
            let got = resolved.settings.get(symbol).map(|s| s.value.as_str());
            (!kconfig::meets(got, &want.value)).then(|| {
                format!(
                    "  {name}:{}: {} required, resolved {}{}",
                    want.line,
                    kconfig::render(symbol, &want.value),
                    got.unwrap_or("absent"),
                    why_dropped(&tree, symbol, resolved)
                )
            })
        })
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    Err(RecipeError::failed(
        format!(
            "the resolved config misses {} requirement(s) of {name}:\n{}",
            lines.len(),
            lines.join("\n")
        ),
        "enable them in the config or a fragment (with what they depend on), or drop them from the requirement file",
    ))
}

/// What Kconfig says the option needs, and which of those needs are off.
fn why_dropped(tree: &std::path::Path, symbol: &str, resolved: &Config) -> String {
    let bare = symbol.strip_prefix("CONFIG_").unwrap_or(symbol);
    let mut out = String::new();
    for expr in kconfig::depends_on(tree, bare) {
        let off = kconfig::off_symbols(expr.trim_end_matches(" (an enclosing `if`)"), resolved);
        let off = if off.is_empty() {
            String::new()
        } else {
            format!(" (off: {})", off.join(", "))
        };
        out.push_str(&format!("\n      unmet: depends on {expr}{off}"));
    }
    out
}
