//! A `source` node, as series and tools declare it: its URLs, its pin, or the Debian package
//! whose tarball it is.

use kdl::KdlNode;

use super::diag::Problem;
use super::nodes::{self, Spanned};
use crate::digest::Sha256;
use crate::model::Source;

/// Whether `source` reads a file of this machine outside the workspace (`file:///…`) with no pin
/// of its own: its first fetch would pin whatever that path holds, any file kbuild can read.
pub fn unpinned_host_file(source: &Source) -> bool {
    source.sha256.is_none()
        && source.package.is_none()
        && source.urls.iter().any(|u| u.starts_with("file:///"))
}

pub fn unpinned_host_file_problem(url: &Spanned) -> Problem {
    Problem::new(
        format!(
            "`{}` reads a file of this machine, outside the workspace, without a pin",
            url.value
        ),
        url.span,
        "unpinned",
    )
    .help("give its sha256=\"…\" (or, for a series, package=\"…\"); a tool may instead share the URL of a series that is pinned")
}

/// `source "URL" "MIRROR"… [sha256="HEX"]`.
pub fn read_source(node: &KdlNode) -> Result<(Source, Spanned), Problem> {
    let mut unknown = Vec::new();
    nodes::check_props(node, &["sha256", "package"], &mut unknown);
    if let Some(problem) = unknown.pop() {
        return Err(problem);
    }
    let urls = nodes::strings(node)?;
    for url in &urls {
        let scheme_ok = ["https://", "http://", "file://"]
            .iter()
            .any(|s| url.value.starts_with(s));
        if !scheme_ok {
            return Err(Problem::new(
                format!("`{}` is not a supported URL", url.value),
                url.span,
                "bad URL",
            )
            .help("use an https://, http:// or file:// URL"));
        }
        let relative = url
            .value
            .strip_prefix("file://")
            .filter(|p| !p.starts_with('/'));
        if let Some(path) = relative
            && std::path::Path::new(path)
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Problem::new(
                format!("the relative URL `{}` leaves the workspace", url.value),
                url.span,
                "outside",
            )
            .help("a relative file:// URL names a file inside the workspace; for a file elsewhere write its absolute file:/// URL with its sha256=\"…\""));
        }
    }
    // Without sha256= the pin comes from kernel.lock, written by the first fetch.
    let sha256 = match nodes::string_prop(node, "sha256")? {
        Some(sha) => Some(Sha256::parse(&sha.value).ok_or_else(|| {
            Problem::new(
                "sha256 must be 64 hexadecimal digits",
                sha.span,
                "not a sha256",
            )
        })?),
        None => None,
    };
    let package = nodes::string_prop(node, "package")?;
    if let Some(package) = &package {
        check_package_source(node, &urls, package, sha256.is_some())?;
    }
    let first = urls[0].clone();
    let source = Source {
        urls: urls.into_iter().map(|u| u.value).collect(),
        sha256,
        replaced: None,
        package: package.map(|p| p.value),
    };
    Ok((source, first))
}

/// A package source is one local file, pinned per machine: a committed sha256 would pin one
/// machine's package version for everyone, which is what `package=` exists to avoid.
fn check_package_source(
    node: &KdlNode,
    urls: &[Spanned],
    package: &Spanned,
    pinned: bool,
) -> Result<(), Problem> {
    if let [url, ..] = urls
        && (urls.len() > 1 || !url.value.starts_with("file://"))
    {
        return Err(Problem::new(
            "a `package=` source is one file:// URL",
            url.span,
            "not the package's file",
        )
        .help("name the tarball the package installs, e.g. \"file:///usr/src/linux-source-6.1.tar.xz\""));
    }
    if pinned {
        let span = nodes::prop(node, "sha256").map_or(package.span, |e| e.span());
        return Err(Problem::new(
            "a `package=` source is pinned on each machine, not in kernel.kdl",
            span,
            "remove this sha256",
        )
        .help("kbuild pins it in kernel.local.lock (not committed) and follows the package's updates; see doc/manifest.md"));
    }
    if package.value.is_empty() || package.value.contains(char::is_whitespace) {
        return Err(Problem::new(
            format!("`{}` is not a package name", package.value),
            package.span,
            "not a package",
        )
        .help("write the name the package manager knows, e.g. \"linux-source-6.1\""));
    }
    Ok(())
}
