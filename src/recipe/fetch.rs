//! Fetch: obtain a source tarball from its first working URL and verify its pinned sha256.

use std::io::Write as _;

use super::{Ctx, Found, RecipeError, io};
use crate::digest::Sha256;

pub fn run(
    ctx: &Ctx,
    urls: &[String],
    sha256: Option<&str>,
    file: &str,
) -> Result<Found, RecipeError> {
    if sha256.is_none() && ctx.locked {
        return Err(RecipeError::failed(
            format!(
                "`{}` is not pinned and --locked forbids pinning it",
                urls[0]
            ),
            "run once without --locked to record its sha256 in kernel.lock, or add sha256= in kernel.kdl",
        ));
    }
    let dest = ctx.out.join(file);
    let mut errors = Vec::new();
    for url in urls {
        match fetch_one(ctx, url, &dest) {
            Ok(()) => {
                return match sha256 {
                    Some(sha256) => verify(ctx, &dest, sha256, url).map(|()| Found::default()),
                    None => pin(&dest, &urls[0]),
                };
            }
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(RecipeError::failed(
        format!("cannot fetch `{file}`:\n  {}", errors.join("\n  ")),
        "check the URL and your network, or add a mirror to the series' `source` node",
    ))
}

fn fetch_one(ctx: &Ctx, url: &str, dest: &std::path::Path) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("file://") {
        // `file://sources/x.tar` (no third slash) is relative to the workspace.
        return std::fs::copy(ctx.workspace.join(path), dest)
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    download(url, dest, ctx).map_err(|e| e.to_string())
}

/// Streams `url` to `dest`, reporting progress of large downloads on stderr and in the log.
fn download(
    url: &str,
    dest: &std::path::Path,
    ctx: &Ctx,
) -> Result<(), Box<dyn std::error::Error>> {
    let response = ureq::get(url).call()?;
    let total: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    let mut file = std::io::BufWriter::new(std::fs::File::create(dest)?);
    let mut buf = vec![0u8; 1 << 16];
    let (mut done, mut reported) = (0u64, 0u64);
    loop {
        if ctx.cancel.is_cancelled() {
            return Err("interrupted".into());
        }
        let n = std::io::Read::read(&mut body, &mut buf)?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut file, &buf[..n])?;
        done += n as u64;
        if let Some(total) = total.filter(|t| *t > 16 << 20) {
            let tenth = done * 10 / total;
            if tenth > reported {
                reported = tenth;
                let line = format!("fetch {url}: {}% of {} MiB", tenth * 10, total >> 20);
                ctx.report.say(&line);
                let _ = writeln!(&*ctx.log, "{line}");
            }
        }
    }
    std::io::Write::flush(&mut file)?;
    if let Some(total) = total.filter(|t| *t != done) {
        return Err(format!("short download: {done} of {total} bytes").into());
    }
    Ok(())
}

/// Trust on first use, as Cargo.lock: the first fetch records what later fetches must match.
/// The engine writes the pin to kernel.lock.
fn pin(path: &std::path::Path, url: &str) -> Result<Found, RecipeError> {
    let actual = Sha256::of_file(path).map_err(io(format!("hashing {}", path.display())))?;
    Ok(Found {
        pin: Some((url.to_string(), actual)),
    })
}

/// A mismatch fails the action, so nothing of the download reaches the cache.
fn verify(ctx: &Ctx, path: &std::path::Path, expected: &str, url: &str) -> Result<(), RecipeError> {
    let actual = Sha256::of_file(path).map_err(io(format!("hashing {}", path.display())))?;
    if actual.as_str() == expected {
        return Ok(());
    }
    let message = format!("sha256 mismatch for {url}\n  expected {expected}\n  actual   {actual}");
    let series = ctx.action.labels.first().map(|l| l.series.as_str());
    let repin = series.map(|s| crate::manifest::packages::pin_command(ctx.workspace, s));
    match crate::model::Source::local_path(url, ctx.workspace) {
        Some(file) => Err(local_mismatch(message, &file, repin.as_deref())),
        None => Err(RecipeError::failed(
            message,
            format!(
                "if the new tarball is the one you want, re-pin it{}; otherwise the download is corrupt or tampered with",
                repin.map(|c| format!(": {c}")).unwrap_or_default()
            ),
        )),
    }
}

/// A local file under a committed pin changed: most often a package updated it. Says which
/// package and version dpkg knows, how to re-pin, and how to stop pinning it in the repository.
fn local_mismatch(message: String, file: &std::path::Path, repin: Option<&str>) -> RecipeError {
    let mut message = format!("{message}\n  file     {}", file.display());
    let owners = crate::dpkg::owners(file);
    let package = owners.first();
    match package {
        Some(package) => {
            let version = crate::dpkg::installed_version(package)
                .map(|v| format!(", now at version {v}"))
                .unwrap_or_default();
            message += &format!(
                "\n  the file belongs to the package `{package}`{version}: the package was probably updated after the pin was written"
            );
        }
        None => message += "\n  the file changed after the pin was written",
    }
    let mut hint = match repin {
        Some(command) => format!("if the new tarball is the one you want, re-pin it: {command}"),
        None => "if the new tarball is the one you want, put its sha256 in the pin".into(),
    };
    if let Some(package) = package {
        hint += &format!(
            "; to follow the package on every machine instead of pinning it in the repository, write package=\"{package}\" on the source (doc/manifest.md)"
        );
    }
    RecipeError::failed(message, hint)
}
