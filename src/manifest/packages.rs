//! Sources that a distribution package installs:
//! `source "file:///usr/src/linux-source-6.1.tar.xz" package="linux-source-6.1"`.
//!
//! Such a tarball changes whenever the package is updated, so no committed sha256 can pin it.
//! Each machine pins it itself, in kernel.local.lock (never committed): the tarball's sha256 and
//! kernel version, the package version dpkg reports, and the file's stat data. While the stat
//! data is unchanged the pin is used as it is (one `stat` per load). When the file changes, it is
//! hashed again and accepted only if dpkg confirms that the installed package put exactly this
//! file there (`dpkg --verify`); then the pin follows the package and the keys follow the pin.
//! Without dpkg, the first pin is trusted and a later change is an error naming the command that
//! re-pins. See doc/manifest.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kdl::{KdlNode, KdlValue};

use crate::digest::Sha256;
use crate::dpkg::{self, Verdict};
use crate::model::{Model, Series, Source};
use crate::statcache::Stamp;

pub use super::files::LOCAL_LOCK_FILE;

/// Why a package source could not be pinned on this machine.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PackageError {
    #[error("`{}` of series `{series}` is missing", path.display())]
    #[diagnostic(help("it is installed by the package `{package}`: apt-get install {package}"))]
    Missing {
        series: String,
        path: PathBuf,
        package: String,
    },
    #[error("cannot read `{}`: {source}", path.display())]
    #[diagnostic(help("check the file's permissions"))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not what the package `{package}` installed: dpkg --verify reports it modified", path.display())]
    #[diagnostic(help("restore the package's file: apt-get install --reinstall {package}"))]
    Modified { path: PathBuf, package: String },
    #[error("`{}` was not installed by the package `{package}` ({})", path.display(), owned_by(owners))]
    #[diagnostic(help(
        "install the package (apt-get install {package}) or name the package that owns the file in `package=`"
    ))]
    NotOwned {
        path: PathBuf,
        package: String,
        owners: Vec<String>,
    },
    #[error("`{}` changed since it was pinned for series `{series}` (sha256 {old} → {new}), and without dpkg kbuild cannot tell a package update from tampering", path.display())]
    #[diagnostic(help("if the new tarball is the one you want, re-pin it: {command}"))]
    Changed {
        series: String,
        path: PathBuf,
        old: String,
        new: String,
        command: String,
    },
    #[error("`{}` has no Makefile with VERSION, PATCHLEVEL and SUBLEVEL at its top: not a kernel source tarball", path.display())]
    #[diagnostic(help("name the package's kernel tarball in `source`"))]
    NotKernel { path: PathBuf },
    #[error("series `{series}`: the package's tarball is Linux {found}, but {expected}")]
    #[diagnostic(help("{help}"))]
    WrongVersion {
        series: String,
        found: semver::Version,
        expected: String,
        help: String,
    },
    #[error("{LOCAL_LOCK_FILE}: {message}")]
    #[diagnostic(help(
        "it only holds this machine's package pins: remove it, and kbuild pins again (verified by dpkg)"
    ))]
    BadLock { message: String },
}

fn owned_by(owners: &[String]) -> String {
    match owners {
        [] => "dpkg knows no package that installed it".into(),
        owners => format!("dpkg says: {}", owners.join(", ")),
    }
}

/// One line of kernel.local.lock.
#[derive(Debug, Clone)]
struct Pin {
    url: String,
    sha256: Sha256,
    /// The kernel release in the tarball's Makefile.
    version: semver::Version,
    package: String,
    /// What dpkg reported when the pin was made; `None` without dpkg.
    package_version: Option<String>,
    stamp: Stamp,
}

/// Which package pins to make again whatever the lock says (`kbuild pin`).
#[derive(Debug, Clone, Copy)]
pub enum Renew<'a> {
    Nothing,
    All,
    Series(&'a [String]),
}

impl Renew<'_> {
    fn covers(self, series: &str) -> bool {
        match self {
            Renew::Nothing => false,
            Renew::All => true,
            Renew::Series(names) => names.iter().any(|n| n == series),
        }
    }
}

/// Pins every package source of `model` on this machine and fills in its sha256, and its
/// version where kernel.kdl gives none.
pub fn resolve(root: &Path, model: &mut Model, renew: Renew) -> Result<(), PackageError> {
    if !model.series.iter().any(|s| s.source.package.is_some()) {
        return Ok(());
    }
    let mut pins = read_lock(root)?;
    let mut changed = false;
    for series in &mut model.series {
        let Some(package) = series.source.package.clone() else {
            continue;
        };
        let url = series.source.urls[0].clone();
        let path = Source::local_path(&url, root).expect("package sources are file:// URLs");
        let stamp = stamp_of(&series.name, &path, &package)?;
        let forced = renew.covers(&series.name);
        let pin = match pins.get(&url) {
            Some(pin) if pin.stamp == stamp && pin.package == package && !forced => pin.clone(),
            old => {
                let pin = pin_anew(root, series, &path, &package, old, forced, stamp)?;
                changed = true;
                pins.insert(url, pin.clone());
                pin
            }
        };
        apply(series, &pin)?;
    }
    if changed {
        write_lock(root, &pins)?;
    }
    Ok(())
}

/// Whether every package source's file is still the one its pin hashed: then [`resolve`] would
/// change nothing, and a remembered model may be used as it is.
pub fn current(root: &Path, model: &Model) -> bool {
    let Ok(pins) = read_lock(root) else {
        return false;
    };
    model.series.iter().all(|series| {
        let Some(package) = &series.source.package else {
            return true;
        };
        let url = &series.source.urls[0];
        let Some(path) = Source::local_path(url, root) else {
            return false;
        };
        let stamp = std::fs::metadata(path).ok().map(|m| Stamp::of(&m));
        pins.get(url)
            .is_some_and(|pin| &pin.package == package && Some(&pin.stamp) == stamp.as_ref())
    })
}

/// The stat data of every file pinned in kernel.local.lock, as text for a fingerprint: a package
/// update changes it, so a null build does not serve the old tarball's kernel.
pub fn stamps(root: &Path) -> String {
    let Ok(pins) = read_lock(root) else {
        return "unreadable".into();
    };
    pins.values()
        .map(|pin| {
            let path = Source::local_path(&pin.url, root).unwrap_or_default();
            match std::fs::metadata(path) {
                Ok(meta) => format!("{} {:?}\n", pin.url, Stamp::of(&meta)),
                Err(_) => format!("{} gone\n", pin.url),
            }
        })
        .collect()
}

/// The command that re-pins `series` in the workspace at `root`.
pub fn pin_command(root: &Path, series: &str) -> String {
    if root == Path::new(".") || root.as_os_str().is_empty() {
        format!("kbuild pin {series}")
    } else {
        format!("kbuild -C {} pin {series}", root.display())
    }
}

fn stamp_of(series: &str, path: &Path, package: &str) -> Result<Stamp, PackageError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Stamp::of(&meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PackageError::Missing {
            series: series.into(),
            path: path.into(),
            package: package.into(),
        }),
        Err(source) => Err(PackageError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Hashes the file and pins it, if dpkg vouches for it (or, without dpkg, if nothing was pinned
/// before or the user asked).
fn pin_anew(
    root: &Path,
    series: &Series,
    path: &Path,
    package: &str,
    old: Option<&Pin>,
    forced: bool,
    stamp: Stamp,
) -> Result<Pin, PackageError> {
    let io = |source| PackageError::Io {
        path: path.into(),
        source,
    };
    let sha256 = Sha256::of_file(path).map_err(io)?;
    if let Some(old) = old.filter(|o| o.sha256 == sha256 && o.package == package) {
        // Touched or copied again, same bytes: only the stat data is new.
        return Ok(Pin {
            stamp,
            ..old.clone()
        });
    }
    match dpkg::verify(package, path) {
        Verdict::Intact => {}
        Verdict::Modified => {
            return Err(PackageError::Modified {
                path: path.into(),
                package: package.into(),
            });
        }
        Verdict::NotOwned { owners } => {
            return Err(PackageError::NotOwned {
                path: path.into(),
                package: package.into(),
                owners,
            });
        }
        Verdict::Unknown => {
            if let Some(old) = old.filter(|_| !forced) {
                return Err(PackageError::Changed {
                    series: series.name.clone(),
                    path: path.into(),
                    old: old.sha256.to_string(),
                    new: sha256.to_string(),
                    command: pin_command(root, &series.name),
                });
            }
        }
    }
    let pin = Pin {
        url: series.source.urls[0].clone(),
        sha256,
        version: tarball_version(path)?,
        package: package.into(),
        package_version: dpkg::installed_version(package),
        stamp,
    };
    announce(&pin, old);
    Ok(pin)
}

fn announce(pin: &Pin, old: Option<&Pin>) {
    let installed = pin.package_version.as_deref().unwrap_or("(no dpkg)");
    let mut line = format!(
        "kbuild: pinned {} from {} {installed} (Linux {}, sha256 {}) in {LOCAL_LOCK_FILE}",
        pin.url,
        pin.package,
        pin.version,
        &pin.sha256.as_str()[..12]
    );
    if let Some(old) = old {
        let was = old.package_version.as_deref().unwrap_or("(no dpkg)");
        line += &format!(
            "; the package moved from {was} (Linux {}, sha256 {})",
            old.version,
            &old.sha256.as_str()[..12]
        );
    }
    eprintln!("{line}");
}

/// Gives the series its pinned sha256 and version; a version kernel.kdl states must match.
fn apply(series: &mut Series, pin: &Pin) -> Result<(), PackageError> {
    let (major, minor) = (series.version.major, series.version.minor);
    if (pin.version.major, pin.version.minor) != (major, minor) {
        return Err(PackageError::WrongVersion {
            series: series.name.clone(),
            found: pin.version.clone(),
            expected: format!("a `{}` version starts with {major}.{minor}.", series.name),
            help: format!(
                "the package `{}` no longer ships this series: name another package, or add a series `{}.{}.x`",
                pin.package, pin.version.major, pin.version.minor
            ),
        });
    }
    if series.version_from_source {
        series.version = pin.version.clone();
    } else if series.version != pin.version {
        return Err(PackageError::WrongVersion {
            series: series.name.clone(),
            found: pin.version.clone(),
            expected: format!("kernel.kdl says `version \"{}\"`", series.version),
            help: format!(
                "kbuild bump {} {} (or drop `version` to follow the package)",
                series.name, pin.version
            ),
        });
    }
    series.source.sha256 = Some(pin.sha256.clone());
    Ok(())
}

/// The release a kernel tarball's top Makefile declares (`VERSION`, `PATCHLEVEL`, `SUBLEVEL`,
/// `EXTRAVERSION`). The Makefile comes early in kernel tarballs, so little is decompressed.
fn tarball_version(path: &Path) -> Result<semver::Version, PackageError> {
    let makefile = crate::archive::read_top_file(path, "Makefile", 1 << 20).map_err(|source| {
        PackageError::Io {
            path: path.into(),
            source,
        }
    })?;
    makefile
        .and_then(|bytes| makefile_version(&String::from_utf8_lossy(&bytes)))
        .ok_or_else(|| PackageError::NotKernel { path: path.into() })
}

fn makefile_version(text: &str) -> Option<semver::Version> {
    let var = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let mut release = format!(
        "{}.{}.{}",
        var("VERSION")?,
        var("PATCHLEVEL")?,
        var("SUBLEVEL")?
    );
    let extra = var("EXTRAVERSION").unwrap_or_default();
    let extra = extra.trim_start_matches('-');
    if !extra.is_empty() {
        release = format!("{release}-{extra}");
    }
    semver::Version::parse(&release).ok()
}

fn read_lock(root: &Path) -> Result<BTreeMap<String, Pin>, PackageError> {
    let path = root.join(LOCAL_LOCK_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(PackageError::Io { path, source }),
    };
    let bad = |message: String| PackageError::BadLock { message };
    let doc =
        super::parse_kdl(&text).map_err(|p| bad(format!("not valid KDL: {}", p[0].message)))?;
    doc.nodes()
        .iter()
        .map(|node| {
            read_pin(node)
                .map(|pin| (pin.url.clone(), pin))
                .map_err(bad)
        })
        .collect()
}

fn read_pin(node: &KdlNode) -> Result<Pin, String> {
    let string = |key: &str| match node.get(key) {
        Some(KdlValue::String(s)) => Ok(s.clone()),
        _ => Err(format!("a `source` line lacks {key}=")),
    };
    let integer = |key: &str| match node.get(key) {
        Some(KdlValue::Integer(n)) => Ok(*n),
        _ => Err(format!("a `source` line lacks {key}=")),
    };
    let url = match node.get(0) {
        Some(KdlValue::String(url)) if node.name().value() == "source" => url.clone(),
        _ => return Err("every line is `source \"URL\" …`".into()),
    };
    let sha256 = Sha256::parse(&string("sha256")?).ok_or("a sha256 is not 64 hex digits")?;
    let version = semver::Version::parse(&string("version")?).map_err(|e| e.to_string())?;
    let number = |n: i128| u64::try_from(n).map_err(|_| "a negative size or inode".to_string());
    Ok(Pin {
        url,
        sha256,
        version,
        package: string("package")?,
        package_version: string("package-version").ok(),
        stamp: Stamp {
            size: number(integer("size")?)?,
            mtime_ns: integer("mtime-ns")?,
            ctime_ns: integer("ctime-ns")?,
            ino: number(integer("ino")?)?,
        },
    })
}

fn write_lock(root: &Path, pins: &BTreeMap<String, Pin>) -> Result<(), PackageError> {
    let path = root.join(LOCAL_LOCK_FILE);
    let mut text = String::from(
        "// This machine's pins of the sources that distribution packages install (package= in\n\
         // kernel.kdl). Written by kbuild, renewed when dpkg shows the package moved. Not committed.\n",
    );
    for pin in pins.values() {
        let mut node = KdlNode::new("source");
        node.push(pin.url.as_str());
        node.insert("sha256", pin.sha256.as_str());
        node.insert("version", pin.version.to_string());
        node.insert("package", pin.package.as_str());
        if let Some(v) = &pin.package_version {
            node.insert("package-version", v.as_str());
        }
        node.insert("size", pin.stamp.size as i128);
        node.insert("mtime-ns", pin.stamp.mtime_ns);
        node.insert("ctime-ns", pin.stamp.ctime_ns);
        node.insert("ino", pin.stamp.ino as i128);
        text += &format!("{node}\n");
    }
    let io = |source| PackageError::Io {
        path: path.clone(),
        source,
    };
    // Two runs may pin at once; the lock beside the file serialises them with kernel.lock's.
    let guard = std::fs::File::create(root.join(".kernel.lock.lock")).map_err(io)?;
    guard.lock().map_err(io)?;
    crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_from_a_kernel_makefile() {
        let makefile = "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\nNAME = Curry Ramen\n";
        assert_eq!(
            makefile_version(makefile),
            Some(semver::Version::new(6, 1, 192))
        );
        let rc = makefile.replace("EXTRAVERSION =", "EXTRAVERSION = -rc3");
        assert_eq!(makefile_version(&rc).unwrap().to_string(), "6.1.192-rc3");
        assert_eq!(makefile_version("all:\n\ttrue\n"), None);
    }

    #[test]
    fn a_lock_line_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let pin = Pin {
            url: "file:///usr/src/linux-source-6.1.tar.xz".into(),
            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
            version: semver::Version::new(6, 1, 192),
            package: "linux-source-6.1".into(),
            package_version: Some("6.1.192-3".into()),
            stamp: Stamp {
                size: 138008000,
                mtime_ns: 1_764_177_120_123_456_789,
                ctime_ns: 1_764_177_121_000_000_000,
                ino: 42,
            },
        };
        let pins = BTreeMap::from([(pin.url.clone(), pin.clone())]);
        write_lock(dir.path(), &pins).unwrap();
        let read = read_lock(dir.path()).unwrap();
        let back = &read[&pin.url];
        assert_eq!(back.sha256, pin.sha256);
        assert_eq!(back.stamp, pin.stamp);
        assert_eq!(back.package_version.as_deref(), Some("6.1.192-3"));
    }

    #[test]
    fn a_damaged_lock_is_an_error_not_an_empty_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOCAL_LOCK_FILE),
            "source \"file:///x\" sha256=1\n",
        )
        .unwrap();
        assert!(matches!(
            read_lock(dir.path()),
            Err(PackageError::BadLock { .. })
        ));
    }
}
