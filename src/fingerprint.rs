//! The run fingerprint: a null build answered without parsing, lowering or keying anything.
//!
//! After a fully successful `kbuild run`, kbuild records a digest of everything the run's keys
//! were computed from: its own executable, the texts of `kernel.kdl`, `kernel.lock`, `kernel.local.kdl` and `kernel.local.lock`, the stat
//! data of the package tarballs pinned in the last, the label patterns, the
//! executor, the listing of every patch directory, the content of every input file and the
//! identity of every toolchain it used, together with the key of every action. The next run with
//! the same patterns recomputes that digest (stat-cached, so mostly `stat` calls); when it is
//! unchanged and every recorded key still has its cache entry, every action is cached and the
//! `out/` links are as the recorded run left them, so the run is done. Anything else, or any
//! doubt, takes the full path. See doc/design.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::digest::Digest;
use crate::exec::{Executor, Toolset};
use crate::key::ActionKey;
use crate::statcache::StatCache;

/// What a run depended on besides the manifest text, as the full path learnt it.
#[derive(Default, Debug, Clone)]
pub struct Dependencies {
    pub patch_dirs: Vec<String>,
    pub inputs: Vec<String>,
    pub toolsets: Vec<Toolset>,
    pub keys: Vec<ActionKey>,
    /// The executor's name when the manifest chose it (no `--executor`): the digest covers the
    /// manifest's text, so while it holds the manifest chooses the same one again.
    pub default_executor: Option<String>,
    /// The stat of everything `out/` shows (see [`out_digest`]), filled in by [`record`].
    pub out: Option<Digest>,
}

fn record_path(cache: &Cache, root: &Path, patterns: &[String]) -> PathBuf {
    let id = Digest::of_bytes(format!("{}\n{}", root.display(), patterns.join("\n")).as_bytes());
    cache
        .dir("state")
        .join(format!("{}.fingerprint", &id.to_hex()[..16]))
}

/// The digest of the run's world as it is now, given what the last full run depended on.
fn digest(
    root: &Path,
    patterns: &[String],
    exec: &dyn Executor,
    deps: &Dependencies,
    stat: &mut StatCache,
) -> Option<Digest> {
    let mut h = blake3::Hasher::new();
    crate::lowered::hash_kbuild_and_manifest(&mut h, root)?;
    h.update(format!("\n{}\n{}\n", exec.name(), patterns.join(" ")).as_bytes());
    for dir in &deps.patch_dirs {
        h.update(format!("dir {dir}:").as_bytes());
        for file in crate::plan::patch_files(root, dir) {
            h.update(file.as_bytes());
        }
    }
    for input in &deps.inputs {
        h.update(format!("input {input} {}\n", stat.digest(&root.join(input)).ok()?).as_bytes());
    }
    for set in &deps.toolsets {
        h.update(format!("tools {}\n", exec.identity(set, stat).ok()?.digest()).as_bytes());
    }
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

fn encode(digest: Digest, deps: &Dependencies) -> String {
    let mut out = format!("{digest}\n");
    for dir in &deps.patch_dirs {
        let _ = writeln!(out, "dir\t{dir}");
    }
    for input in &deps.inputs {
        let _ = writeln!(out, "input\t{input}");
    }
    for set in &deps.toolsets {
        let arch = set.arch.map_or("-", |a| a.kernel_name());
        let builder = set.builder.as_deref().unwrap_or("-");
        let _ = writeln!(out, "tools\t{arch}\t{builder}\t{}", set.tools.join(","));
    }
    for key in &deps.keys {
        let _ = writeln!(out, "key\t{key}");
    }
    if let Some(name) = &deps.default_executor {
        let _ = writeln!(out, "default-executor\t{name}");
    }
    if let Some(digest) = &deps.out {
        let _ = writeln!(out, "out\t{digest}");
    }
    out
}

fn decode(text: &str) -> Option<(Digest, Dependencies)> {
    let mut lines = text.lines();
    let digest = Digest::from_hex(lines.next()?)?;
    let mut deps = Dependencies::default();
    for line in lines {
        let (kind, rest) = line.split_once('\t')?;
        match kind {
            "dir" => deps.patch_dirs.push(rest.to_string()),
            "input" => deps.inputs.push(rest.to_string()),
            "tools" => {
                let (arch, rest) = rest.split_once('\t')?;
                let (builder, tools) = rest.split_once('\t')?;
                let arch = if arch == "-" {
                    None
                } else {
                    Some(arch.parse().ok()?)
                };
                deps.toolsets.push(Toolset {
                    tools: tools.split(',').map(String::from).collect(),
                    arch,
                    builder: (builder != "-").then(|| builder.to_string()),
                });
            }
            "key" => deps.keys.push(ActionKey(Digest::from_hex(rest)?)),
            "default-executor" => deps.default_executor = Some(rest.to_string()),
            "out" => deps.out = Some(Digest::from_hex(rest)?),
            _ => return None,
        }
    }
    Some((digest, deps))
}

/// The record of the last fully successful run of these patterns.
pub struct Record {
    digest: Digest,
    deps: Dependencies,
}

pub fn load(root: &Path, cache: &Cache, patterns: &[String]) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(cache, root, patterns)).ok()?;
    let (digest, deps) = decode(&text)?;
    Some(Record { digest, deps })
}

impl Record {
    /// The executor the manifest chose for the recorded run, if no flag chose it.
    pub fn default_executor(&self) -> Option<&str> {
        self.deps.default_executor.as_deref()
    }

    /// The number of actions, when the recorded run still holds with `exec`: nothing it
    /// depended on changed and all its cache entries exist.
    pub fn null_build(
        &self,
        root: &Path,
        cache: &Cache,
        exec: &dyn Executor,
        patterns: &[String],
    ) -> Option<usize> {
        let mut stat = StatCache::in_state_dir(&cache.dir("state"));
        let now = digest(root, patterns, exec, &self.deps, &mut stat)?;
        stat.save();
        let deps = &self.deps;
        // What out/ shows must be what the recorded run left: a byte changed behind a link, a
        // tree or blob removed from the cache, a link replaced, all move a stat.
        let out = deps.out.is_some() && out_digest(root) == deps.out;
        (now == self.digest && out && deps.keys.iter().all(|k| cache.has_entry(*k)))
            .then_some(deps.keys.len())
    }
}

/// Records a fully successful run, so that the next identical one can take [`null_build`].
pub fn record(
    root: &Path,
    cache: &Cache,
    exec: &dyn Executor,
    patterns: &[String],
    deps: &Dependencies,
) {
    let mut stat = StatCache::in_state_dir(&cache.dir("state"));
    let Some(digest) = digest(root, patterns, exec, deps, &mut stat) else {
        return;
    };
    stat.save();
    let Some(out) = out_digest(root) else {
        return;
    };
    let deps = Dependencies {
        out: Some(out),
        ..deps.clone()
    };
    // Best effort: without the record the next run takes the full path.
    let _ = crate::fsutil::write_atomic(
        &record_path(cache, root, patterns),
        encode(digest, &deps).as_bytes(),
    );
}

/// A digest of the stat data (type, size, mode, inode, mtime, ctime, link text) of everything
/// `out/` shows, its links followed into the cache's trees: no file is read, so the null build
/// stays a matter of `stat` calls, yet any write, removal or replacement behind `out/` changes
/// it (a write moves the ctime even when the mtime is put back). `None` when something shown
/// cannot be reached (a dangling link), which the recorded run never leaves.
pub fn out_digest(root: &Path) -> Option<Digest> {
    use std::os::unix::fs::MetadataExt;
    let mut h = blake3::Hasher::new();
    let mut pending = vec![(root.join("out"), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{rel}/{}", entry.file_name().to_string_lossy());
            let path = entry.path();
            let own = std::fs::symlink_metadata(&path).ok()?;
            if own.file_type().is_symlink() {
                let text = std::fs::read_link(&path).ok()?;
                h.update(format!("link {name} {}\n", text.display()).as_bytes());
            }
            let meta = std::fs::metadata(&path).ok()?;
            h.update(
                format!(
                    "{name} {} {} {:o} {} {}.{} {}.{}\n",
                    meta.is_dir(),
                    meta.len(),
                    meta.mode(),
                    meta.ino(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec()
                )
                .as_bytes(),
            );
            // Trees nest a few levels; a link loop must not walk forever.
            if meta.is_dir() && depth < 32 {
                pending.push((path, name, depth + 1));
            }
        }
    }
    Some(Digest::from_bytes(*h.finalize().as_bytes()))
}

/// Forgets the record, e.g. when a run failed: the next run must take the full path.
pub fn forget(root: &Path, cache: &Cache, patterns: &[String]) {
    let _ = std::fs::remove_file(record_path(cache, root, patterns));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    #[test]
    fn record_round_trips() {
        let deps = Dependencies {
            patch_dirs: vec!["kernel/6.6.x/patches".into()],
            inputs: vec!["kernel/6.6.x/config-x86_64".into()],
            toolsets: vec![
                Toolset {
                    tools: vec!["make".into(), "gcc".into()],
                    arch: Some(Arch::X86_64),
                    builder: Some("debian:bookworm".into()),
                },
                Toolset {
                    tools: vec!["patch".into()],
                    arch: None,
                    builder: None,
                },
            ],
            keys: vec![ActionKey(Digest::of_bytes(b"a"))],
            default_executor: Some("host".into()),
            out: Some(Digest::of_bytes(b"out")),
        };
        let d = Digest::of_bytes(b"d");
        let (back_d, back) = decode(&encode(d, &deps)).unwrap();
        assert_eq!(back_d, d);
        assert_eq!(back.inputs, deps.inputs);
        assert_eq!(back.toolsets, deps.toolsets);
        assert_eq!(back.keys, deps.keys);
        assert_eq!(back.default_executor, deps.default_executor);
        assert_eq!(back.out, deps.out);
    }
}
