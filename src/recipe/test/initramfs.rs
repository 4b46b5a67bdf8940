//! The boot test's initramfs: the static /init (see `init.rs`), the modules it loads, taken
//! from the target's own kernel.tar with what modules.dep says they need, and the list to load
//! them in, as a deterministic cpio.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::super::{Ctx, RecipeError, io};
use crate::cpio::Entry;
use crate::exec::Invocation;

/// Compiles /init with the target's C compiler, statically.
pub fn compile_init(ctx: &Ctx, cc: &str) -> Result<Vec<u8>, RecipeError> {
    let src = ctx.work.join("init.c");
    std::fs::write(&src, super::init::SOURCE).map_err(io("writing init.c"))?;
    let bin = ctx.work.join("init");
    ctx.run(
        Invocation::new(cc, ctx.work)
            .args(["-static", "-Os", "-s", "-o"])
            .arg(bin.display().to_string())
            .arg(src.display().to_string())
            .output(&bin),
    )?;
    std::fs::read(&bin).map_err(io("reading the compiled init"))
}

/// The modules a test loads, in load order, and the names it asked for that the kernel does
/// not build as modules (a verdict on the kernel, not an error of the machine).
pub struct Modules {
    /// (path in the tar, bytes), dependencies first.
    pub files: Vec<(String, Vec<u8>)>,
    pub missing: Vec<String>,
}

/// The files of `kernel.tar` under `lib/modules/<release>/` for the modules named and their
/// dependencies.
pub fn modules(
    kernel_tar: &Path,
    release: &str,
    wanted: &[String],
) -> Result<Modules, RecipeError> {
    let mut found = Modules {
        files: Vec::new(),
        missing: Vec::new(),
    };
    if wanted.is_empty() {
        return Ok(found);
    }
    let base = format!("lib/modules/{release}/");
    let files = read_members(kernel_tar, &base)?;
    let dep_text = files
        .get(&format!("{base}modules.dep"))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| {
            RecipeError::failed(
                format!("kernel.tar has no {base}modules.dep"),
                "the install action runs depmod; check its log (kbuild log install …)",
            )
        })?;
    let deps = parse_modules_dep(&dep_text);
    let mut order = Vec::new();
    for name in wanted {
        let Some(module) = find_module(&deps, name) else {
            found.missing.push(name.clone());
            continue;
        };
        // modules.dep lists what a module needs nearest first: load from the far end.
        for path in deps[module].iter().rev().chain(std::iter::once(module)) {
            if !order.contains(path) {
                order.push(path.clone());
            }
        }
    }
    found.files = order
        .into_iter()
        .map(|rel| {
            let member = format!("{base}{rel}");
            let bytes = files.get(&member).ok_or_else(|| {
                RecipeError::failed(
                    format!("modules.dep names {rel}, which kernel.tar does not hold"),
                    "the install action's output is damaged: run `kbuild cache verify`",
                )
            })?;
            let (plain, bytes) = uncompressed(&rel, bytes)?;
            Ok((format!("{base}{plain}"), bytes))
        })
        .collect::<Result<_, RecipeError>>()?;
    Ok(found)
}

/// Every regular file of the tar under `prefix`.
fn read_members(tar: &Path, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, RecipeError> {
    let file = std::fs::File::open(tar).map_err(io(format!("opening {}", tar.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut files = BTreeMap::new();
    let bad = io(format!("reading {}", tar.display()));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(io("reading kernel.tar"))?;
        let path = entry.path().map_err(io("reading kernel.tar"))?;
        let path = path.to_string_lossy().trim_start_matches("./").to_string();
        if entry.header().entry_type().is_file() && path.starts_with(prefix) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(io("reading kernel.tar"))?;
            files.insert(path, bytes);
        }
    }
    Ok(files)
}

/// `kernel/a.ko: kernel/b.ko kernel/c.ko` lines, as a map.
fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| {
            let deps = deps.split_whitespace().map(str::to_string).collect();
            (module.trim().to_string(), deps)
        })
        .collect()
}

/// The modules.dep path of module `name`: file names spell `-` and `_` alike, and may be
/// compressed (`.ko.xz`).
fn find_module<'a>(deps: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a String> {
    let norm = |s: &str| s.replace('-', "_");
    let want = norm(name.trim_end_matches(".ko"));
    deps.keys().find(|path| {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        norm(stem) == want
    })
}

/// A module as finit_module(2) takes it without the kernel's own decompressor.
fn uncompressed(rel: &str, bytes: &[u8]) -> Result<(String, Vec<u8>), RecipeError> {
    let failed = |e: std::io::Error| {
        RecipeError::failed(
            format!("cannot decompress {rel}: {e}"),
            "the install action's output is damaged: run `kbuild cache verify`",
        )
    };
    let mut out = Vec::new();
    if let Some(plain) = rel.strip_suffix(".xz") {
        liblzma::read::XzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(failed)?;
        return Ok((plain.to_string(), out));
    }
    if let Some(plain) = rel.strip_suffix(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(failed)?;
        return Ok((plain.to_string(), out));
    }
    if rel.ends_with(".zst") {
        return Err(RecipeError::failed(
            format!("{rel} is zstd-compressed, which the boot test cannot unpack"),
            "set CONFIG_MODULE_COMPRESS_XZ or _GZIP (or none) for tested kernels",
        ));
    }
    Ok((rel.to_string(), bytes.to_vec()))
}

/// The archive: /init, the modules at their paths, the load list, and the directories the
/// kernel and init expect (with /dev/console and /dev/kmsg, for init's output).
pub fn archive(
    init: Vec<u8>,
    modules: &[(String, Vec<u8>)],
    epoch: u32,
) -> std::io::Result<Vec<u8>> {
    let dir = |path: &str| Entry::Dir {
        path: path.into(),
        mode: 0o755,
    };
    let mut entries = vec![
        dir("dev"),
        Entry::CharDevice {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        // Where /init writes its lines: the kernel's log (see init.rs).
        Entry::CharDevice {
            path: "dev/kmsg".into(),
            mode: 0o600,
            major: 1,
            minor: 11,
        },
        dir("proc"),
        dir("sys"),
        dir("kbuild-test"),
        Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: init,
        },
    ];
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in modules {
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if !dirs.contains(&at) {
                dirs.push(at.clone());
                entries.push(dir(&at));
            }
        }
    }
    let mut load = String::new();
    for (path, bytes) in modules {
        entries.push(Entry::File {
            path: path.clone(),
            mode: 0o644,
            data: bytes.clone(),
        });
        load.push_str(&format!("/{path}\n"));
    }
    entries.push(Entry::File {
        path: "kbuild-test/load".into(),
        mode: 0o644,
        data: load.into_bytes(),
    });
    let mut out = Vec::new();
    crate::cpio::write(&mut out, &entries, epoch)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_resolve_with_their_dependencies_first_and_spell_dashes_as_underscores() {
        let deps = parse_modules_dep(
            "kernel/lib/kunit/kunit.ko:\nkernel/lib/kunit/kunit-example-test.ko.xz: kernel/lib/kunit/kunit.ko\n",
        );
        let found = find_module(&deps, "kunit_example_test").unwrap();
        assert_eq!(found, "kernel/lib/kunit/kunit-example-test.ko.xz");
        assert_eq!(deps[found], ["kernel/lib/kunit/kunit.ko"]);
        assert!(find_module(&deps, "kunit-example").is_none());
    }

    #[test]
    fn the_archive_holds_init_the_modules_and_their_load_order() {
        let modules = vec![
            ("lib/modules/6.1-k/kernel/a.ko".to_string(), b"a".to_vec()),
            ("lib/modules/6.1-k/kernel/b.ko".to_string(), b"b".to_vec()),
        ];
        let bytes = archive(b"\x7fELF".to_vec(), &modules, 0).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("/lib/modules/6.1-k/kernel/a.ko\n/lib/modules/6.1-k/kernel/b.ko\n"));
        assert!(text.contains("lib/modules/6.1-k/kernel\0"));
        assert_eq!(bytes, archive(b"\x7fELF".to_vec(), &modules, 0).unwrap());
    }

    #[test]
    fn compressed_modules_are_unpacked_and_zstd_is_refused_clearly() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"module").unwrap();
        let (name, bytes) = uncompressed("kernel/a.ko.gz", &gz.finish().unwrap()).unwrap();
        assert_eq!(
            (name.as_str(), bytes.as_slice()),
            ("kernel/a.ko", &b"module"[..])
        );
        let err = uncompressed("kernel/a.ko.zst", b"x").unwrap_err();
        assert!(err.to_string().contains("zstd"));
    }
}
