//! The remote cache's readers of what a server sends, as one call for the fuzz target
//! (fuzz/fuzz_targets/remote.rs): an `ActionResult`, and a `Tree` laid out on disk the way a hit
//! is. Whatever the bytes, nothing may panic and nothing may be written outside `dest`.

use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::digest::Function;
use super::{layout, reapi};
use crate::cache::{OutputEntry, OutputManifest};

/// Reads `bytes` as an action-cache answer and as an output tree; a tree that passes the checks
/// is laid out under `dest` (which must not exist), its files empty.
pub fn read_answer(bytes: &[u8], dest: &Path) {
    if let Ok(result) = re::ActionResult::decode(bytes) {
        let _ = reapi::parts(&result);
    }
    let Ok(tree) = re::Tree::decode(bytes) else {
        return;
    };
    let Ok(entries) = reapi::entries(Function::Sha256, &tree) else {
        return;
    };
    // A manifest that claims exactly what the tree holds, as a consistent hostile server's
    // would: the checks of the tree's own shape are what is left to pass.
    let manifest = OutputManifest::new(entries.iter().map(claim).collect());
    let Ok(checked) = layout::check(&manifest, &entries) else {
        return;
    };
    if layout::create_root(dest).is_err() {
        return;
    }
    for file in &checked.files {
        let _ = layout::create_file(dest, file.path);
    }
    let _ = layout::make_links(dest, &checked.links);
}

fn claim(entry: &reapi::TreeEntry) -> OutputEntry {
    let digest = crate::digest::Digest::of_bytes(b"");
    match entry {
        reapi::TreeEntry::File {
            path, executable, ..
        } => OutputEntry {
            path: path.clone(),
            digest,
            size: 0,
            executable: *executable,
            symlink: None,
        },
        reapi::TreeEntry::Symlink { path, target } => OutputEntry {
            path: path.clone(),
            digest,
            size: 0,
            executable: false,
            symlink: Some(target.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(
        files: &[&str],
        links: &[(&str, &str)],
        dirs: Vec<(&str, re::Directory)>,
    ) -> re::Directory {
        let f = Function::Sha256;
        re::Directory {
            files: (files.iter())
                .map(|n| re::FileNode {
                    name: n.to_string(),
                    digest: Some(f.of_bytes(n.as_bytes())),
                    ..Default::default()
                })
                .collect(),
            symlinks: (links.iter())
                .map(|(n, t)| re::SymlinkNode {
                    name: n.to_string(),
                    target: t.to_string(),
                    ..Default::default()
                })
                .collect(),
            directories: (dirs.into_iter())
                .map(|(n, d)| re::DirectoryNode {
                    name: n.to_string(),
                    digest: Some(reapi::Blob::of(f, &d).digest),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The fuzz target's seeds (fuzz/corpus/remote): an ordinary tree and the hostile ones.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let sub = dir(&["victim"], &[], vec![]);
        let trick = re::Tree {
            root: Some(dir(&[], &[("a", "/tmp")], vec![("a", sub.clone())])),
            children: vec![sub],
        };
        let modules = dir(&["modules.dep"], &[("kernel", "../kernel")], vec![]);
        let ordinary = re::Tree {
            root: Some(dir(&["kernel"], &[], vec![("lib", modules.clone())])),
            children: vec![modules],
        };
        let climb = re::Tree {
            root: Some(dir(&[], &[("up", "../..")], vec![])),
            children: vec![],
        };
        vec![
            ("tree-symlink-trick", trick.encode_to_vec()),
            ("tree-ordinary", ordinary.encode_to_vec()),
            ("tree-climbing-link", climb.encode_to_vec()),
        ]
    }

    #[test]
    fn the_seeds_read_as_they_should() {
        for (name, bytes) in seeds() {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            read_answer(&bytes, &dest);
            assert_eq!(dest.exists(), name == "tree-ordinary", "{name}");
            if let Ok(seeds) = std::env::var("KBUILD_WRITE_FUZZ_SEEDS") {
                std::fs::write(Path::new(&seeds).join(name), &bytes).unwrap();
            }
        }
    }
}
