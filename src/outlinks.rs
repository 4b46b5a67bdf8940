//! `out/`: per target, a link to its image files (`out/<series>/<target>`) and to its tags
//! (`out/<series>/<target>.tags`), pointing into the cache's materialised trees.
//!
//! `out/.kbuild-links` records where each link points, so a null build checks one file instead
//! of two syscalls per link. A link removed by hand comes back when its target's output changes,
//! or when `out/` is removed as a whole.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, CacheError, io_err};
use crate::engine::Status;
use crate::graph::Graph;
use crate::kind::{ActionKind, OutLink};
use crate::label::Label;

const RECORD: &str = ".kbuild-links";

fn load_record(out: &Path) -> BTreeMap<String, PathBuf> {
    let text = std::fs::read_to_string(out.join(RECORD)).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(link, target)| (link.to_string(), PathBuf::from(target)))
        .collect()
}

/// Makes the links of `targets` point at their current outputs.
pub fn refresh(
    root: &Path,
    cache: &Cache,
    graph: &Graph,
    targets: &[Label],
    status: &[Status],
) -> Result<(), CacheError> {
    let out = root.join("out");
    let mut record = load_record(&out);
    let mut changed = false;
    for target in targets {
        for &kind in ActionKind::ALL {
            let (name, file) = match kind.traits().out {
                OutLink::Nothing => continue,
                OutLink::Tree => (target.name(), ""),
                OutLink::TagsFile => (format!("{}.tags", target.name()), "tags"),
            };
            let Some(id) = graph.of(kind, target) else {
                continue;
            };
            let Some(output) = status[id.index()].output() else {
                continue;
            };
            let rel = format!("{}/{name}", target.series);
            let wanted = cache.tree_path(output).join(file);
            // The tree may have gone with the cache (`rm -rf cache`) while the link stayed.
            if record.get(&rel) == Some(&wanted) && cache.tree_ready(output) {
                continue;
            }
            let Some(manifest) = status[id.index()].key().and_then(|key| cache.lookup(key)) else {
                continue;
            };
            let tree = cache.tree(&manifest)?.join(file);
            let link = out.join(&rel);
            replace_symlink(&tree, &link).map_err(io_err(&link))?;
            record.insert(rel, tree);
            changed = true;
        }
    }
    if changed {
        let text: String = record
            .iter()
            .map(|(l, t)| format!("{l}\t{}\n", t.display()))
            .collect();
        crate::cache::write_atomic(&out.join(RECORD), text.as_bytes())?;
    }
    Ok(())
}

/// Replaces `link` atomically; the temp name carries the pid, as two runs may link at once.
fn replace_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    std::fs::create_dir_all(link.parent().expect("out links have parents"))?;
    let tmp = link.with_file_name(format!(".kbuild-link.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Writes every image and index of a successful run into the OCI layout at `out`, under all
/// their references; from the cache, so a run that executed nothing recreates it just the same.
pub fn write_layout(
    out: &Path,
    cache: &Cache,
    graph: &Graph,
    status: &[Status],
) -> Result<(), CacheError> {
    use crate::action::Recipe;
    // What the layout was last written from: when every image and index is as it was, and the
    // layout is still there, there is nothing to write (a null build reads one small file).
    let wanted: String = graph
        .ids()
        .filter(|id| {
            matches!(
                graph.action(*id).recipe,
                Recipe::Index(_) | Recipe::Image(_) | Recipe::Attest(_)
            )
        })
        .filter_map(|id| {
            // The tree's inode too: a tree made again (after `cache verify` dropped a corrupt
            // one) has the same digest but new files, which the layout must link instead.
            let output = status[id.index()].output()?;
            let made = std::fs::metadata(cache.tree_path(output)).map_or(0, |m| m.ino());
            Some(format!("{}\t{output}\t{made}\n", graph.action(id).name))
        })
        .collect();
    let record = out.join(".kbuild-layout");
    if out.join("index.json").exists()
        && std::fs::read_to_string(&record).is_ok_and(|r| r == wanted)
    {
        return Ok(());
    }
    let mut entries = Vec::new();
    let mut dirs = Vec::new();
    for id in graph.ids() {
        let action = graph.action(id);
        let refs = match &action.recipe {
            Recipe::Index(spec) => {
                crate::tags::references(&spec.repository, &spec.prefix, &spec.hash, "").index
            }
            Recipe::Image(_) => match graph
                .of(ActionKind::Tag, &action.labels[0])
                .map(|t| &graph.action(t).recipe)
            {
                Some(Recipe::Tag(spec)) => {
                    crate::tags::references(
                        &spec.repository,
                        &spec.prefix,
                        &spec.hash,
                        spec.arch.image_name(),
                    )
                    .arch
                }
                _ => continue,
            },
            // Named by no reference: the index holds it, the layout holds its blobs.
            Recipe::Attest(_) => Vec::new(),
            _ => continue,
        };
        let Some(manifest) = status[id.index()].key().and_then(|key| cache.lookup(key)) else {
            continue;
        };
        let dir = cache.tree(&manifest)?;
        let descriptor =
            crate::recipe::image::read_descriptor(&dir).map_err(|e| CacheError::Io {
                path: dir.join("descriptor.json"),
                source: std::io::Error::other(e.to_string()),
            })?;
        entries.extend(refs.into_iter().map(|reference| crate::oci::layout::Entry {
            reference,
            descriptor: descriptor.clone(),
        }));
        dirs.push(dir);
    }
    crate::oci::layout::write(out, &entries, (&dirs, cache.ledger())).map_err(io_err(out))?;
    crate::cache::write_atomic(&record, wanted.as_bytes())
}
