//! kbuild's actions and outputs as REAPI messages, so that any REAPI tool reading the cache
//! sees ordinary entries.
//!
//! Each action is an `Action` whose `Command` names kbuild and the action kind, whose input
//! root is the empty directory (kbuild's inputs are all in its key), and whose `salt` is the
//! kbuild key: the digest of that `Action` is the action-cache key. Its result holds the
//! outputs as one directory, `out`, given as a `Tree`; kbuild's own output manifest (paths,
//! blake3 digests, modes) as the file `kbuild-manifest.json`, so that a hit tells dependents
//! their key without any output crossing the wire; and the action's log as stdout.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::digest::Function;
use crate::cache::{OutputEntry, OutputManifest};
use crate::key::ActionKey;
use crate::kind::ActionKind;

pub const OUT_DIR: &str = "out";
pub const MANIFEST_FILE: &str = "kbuild-manifest.json";

/// A message and its digest, ready to upload.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: re::Digest,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn of(function: Function, message: &impl Message) -> Blob {
        let data = message.encode_to_vec();
        Blob {
            digest: function.of_bytes(&data),
            data,
        }
    }
}

/// The `Action` standing for one kbuild action, with its `Command` and input root.
pub struct ActionMessages {
    pub action: Blob,
    pub command: Blob,
    pub input_root: Blob,
}

pub fn action(function: Function, kind: ActionKind, key: ActionKey) -> ActionMessages {
    let command = re::Command {
        arguments: vec!["kbuild".into(), kind.as_str().into()],
        output_paths: vec![MANIFEST_FILE.into(), OUT_DIR.into()],
        ..Default::default()
    };
    let command = Blob::of(function, &command);
    let input_root = Blob::of(function, &re::Directory::default());
    let action = re::Action {
        command_digest: Some(command.digest.clone()),
        input_root_digest: Some(input_root.digest.clone()),
        salt: key.0.as_bytes().to_vec(),
        platform: Some(re::Platform {
            properties: vec![re::platform::Property {
                name: "kbuild-key-schema".into(),
                value: crate::key::SCHEMA.to_string(),
            }],
        }),
        ..Default::default()
    };
    ActionMessages {
        action: Blob::of(function, &action),
        command,
        input_root,
    }
}

/// A directory being assembled: files and symlinks by name, subdirectories by name.
#[derive(Default)]
struct Node {
    files: BTreeMap<String, (re::Digest, bool)>,
    symlinks: BTreeMap<String, String>,
    dirs: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &str, entry: &OutputEntry, digest: &re::Digest) {
        match path.split_once('/') {
            Some((dir, rest)) => self
                .dirs
                .entry(dir.to_string())
                .or_default()
                .insert(rest, entry, digest),
            None => match &entry.symlink {
                Some(target) => drop(self.symlinks.insert(path.to_string(), target.clone())),
                None => drop(
                    self.files
                        .insert(path.to_string(), (digest.clone(), entry.executable)),
                ),
            },
        }
    }

    /// The `Directory` message of this node; its subdirectories' messages go to `children`.
    fn message(&self, function: Function, children: &mut Vec<re::Directory>) -> re::Directory {
        let directories = self
            .dirs
            .iter()
            .map(|(name, node)| {
                let dir = node.message(function, children);
                let digest = Blob::of(function, &dir).digest;
                children.push(dir);
                re::DirectoryNode {
                    name: name.clone(),
                    digest: Some(digest),
                }
            })
            .collect();
        re::Directory {
            files: self
                .files
                .iter()
                .map(|(name, (digest, executable))| re::FileNode {
                    name: name.clone(),
                    digest: Some(digest.clone()),
                    is_executable: *executable,
                    ..Default::default()
                })
                .collect(),
            directories,
            symlinks: self
                .symlinks
                .iter()
                .map(|(name, target)| re::SymlinkNode {
                    name: name.clone(),
                    target: target.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The `Tree` of a manifest's outputs, `digest_of` giving each file's remote digest. Names are
/// sorted, as REAPI requires, so equal outputs give equal trees.
pub fn tree(
    function: Function,
    manifest: &OutputManifest,
    digest_of: impl Fn(&OutputEntry) -> re::Digest,
) -> re::Tree {
    let mut root = Node::default();
    for entry in manifest.entries() {
        root.insert(&entry.path, entry, &digest_of(entry));
    }
    let mut children = Vec::new();
    let root = root.message(function, &mut children);
    // Each directory is hashed once for the sort, not once per comparison.
    children.sort_by_cached_key(|d| Blob::of(function, d).digest.hash);
    children.dedup();
    re::Tree {
        root: Some(root),
        children,
    }
}

/// One file or symlink of a tree, with its path under the tree's root.
#[derive(Clone, Debug, PartialEq)]
pub enum TreeEntry {
    File {
        path: String,
        digest: re::Digest,
        executable: bool,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl TreeEntry {
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::File { path, .. } | TreeEntry::Symlink { path, .. } => path,
        }
    }
}

/// Every file and symlink of `tree`. A tree from a server is input from outside: a name that
/// is empty, `.`, `..` or holds a `/`, a missing child or one nested absurdly deep is an error,
/// never a path outside the output directory.
pub fn entries(function: Function, tree: &re::Tree) -> Result<Vec<TreeEntry>, String> {
    let children: BTreeMap<String, &re::Directory> = tree
        .children
        .iter()
        .map(|d| (Blob::of(function, d).digest.hash, d))
        .collect();
    let root = tree.root.as_ref().ok_or("the tree has no root")?;
    let mut out = Vec::new();
    walk(root, "", &children, 0, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &re::Directory,
    prefix: &str,
    children: &BTreeMap<String, &re::Directory>,
    depth: usize,
    out: &mut Vec<TreeEntry>,
) -> Result<(), String> {
    if depth > 256 {
        return Err("the tree is nested more than 256 levels deep".into());
    }
    let path = |name: &str| -> Result<String, String> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(format!("the tree names an entry `{name}`"));
        }
        Ok(format!("{prefix}{name}"))
    };
    for file in &dir.files {
        let digest = file.digest.clone().ok_or("a file without a digest")?;
        out.push(TreeEntry::File {
            path: path(&file.name)?,
            digest,
            executable: file.is_executable,
        });
    }
    for link in &dir.symlinks {
        out.push(TreeEntry::Symlink {
            path: path(&link.name)?,
            target: link.target.clone(),
        });
    }
    for sub in &dir.directories {
        let digest = sub.digest.as_ref().ok_or("a directory without a digest")?;
        let child = children
            .get(&digest.hash)
            .ok_or_else(|| format!("the tree lacks the directory `{}`", sub.name))?;
        let prefix = format!("{}/", path(&sub.name)?);
        walk(child, &prefix, children, depth + 1, out)?;
    }
    Ok(())
}

/// The `ActionResult` of a successful kbuild action: kbuild's manifest as a file, the outputs as a directory (none for
/// a result kept by its manifest alone), the log as stdout.
pub fn result(manifest: &Blob, tree: Option<&Blob>, log: Option<&re::Digest>) -> re::ActionResult {
    re::ActionResult {
        output_files: vec![re::OutputFile {
            path: MANIFEST_FILE.into(),
            digest: Some(manifest.digest.clone()),
            ..Default::default()
        }],
        output_directories: tree
            .map(|tree| re::OutputDirectory {
                path: OUT_DIR.into(),
                tree_digest: Some(tree.digest.clone()),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        exit_code: 0,
        stdout_digest: log.cloned(),
        execution_metadata: Some(re::ExecutedActionMetadata {
            worker: "kbuild".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a result keeps kbuild's manifest and its output tree (`None` for a result kept by its
/// manifest alone); `None` for a result some other tool wrote, or one that failed.
pub fn parts(result: &re::ActionResult) -> Option<(re::Digest, Option<re::Digest>)> {
    if result.exit_code != 0 {
        return None;
    }
    let manifest = result
        .output_files
        .iter()
        .find(|f| f.path == MANIFEST_FILE)?
        .digest
        .clone()?;
    let tree = match result.output_directories.iter().find(|d| d.path == OUT_DIR) {
        Some(dir) => Some(dir.tree_digest.clone()?),
        None => None,
    };
    Some((manifest, tree))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn entry(path: &str, executable: bool, symlink: Option<&str>) -> OutputEntry {
        OutputEntry {
            path: path.into(),
            digest: Digest::of_bytes(path.as_bytes()),
            size: path.len() as u64,
            executable,
            symlink: symlink.map(String::from),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_a_tree() {
        let manifest = OutputManifest::new(vec![
            entry("kernel", false, None),
            entry("lib/modules/6.1/modules.dep", false, None),
            entry("lib/modules/6.1/source", false, Some("/usr/src/linux")),
            entry("usr/bin/perf", true, None),
        ]);
        for function in [Function::Sha256, Function::Blake3] {
            let digest = |e: &OutputEntry| function.of_bytes(e.path.as_bytes());
            let tree = tree(function, &manifest, digest);
            let mut got = entries(function, &tree).unwrap();
            got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            assert!(got.contains(&TreeEntry::File {
                path: "usr/bin/perf".into(),
                digest: function.of_bytes(b"usr/bin/perf"),
                executable: true
            }));
            assert!(got.contains(&TreeEntry::Symlink {
                path: "lib/modules/6.1/source".into(),
                target: "/usr/src/linux".into()
            }));
            assert_eq!(got.len(), 4);
            assert_eq!(
                Blob::of(function, &tree).digest,
                Blob::of(function, &super::tree(function, &manifest, digest)).digest,
                "the same outputs give the same tree"
            );
        }
    }

    #[test]
    fn a_hostile_tree_is_refused() {
        let function = Function::Sha256;
        let mut tree = tree(
            function,
            &OutputManifest::new(vec![entry("a/b", false, None)]),
            |e| function.of_bytes(e.path.as_bytes()),
        );
        tree.root.as_mut().unwrap().directories[0].name = "..".into();
        assert!(entries(function, &tree).unwrap_err().contains("`..`"));
        tree.root.as_mut().unwrap().directories[0].name = "a".into();
        tree.children.clear();
        assert!(entries(function, &tree).unwrap_err().contains("lacks"));
    }

    #[test]
    fn an_action_digest_depends_on_the_key_and_kind_only() {
        let key = |b: &[u8]| ActionKey(Digest::of_bytes(b));
        let f = Function::Sha256;
        let a = action(f, ActionKind::Compile, key(b"k")).action.digest;
        assert_eq!(a, action(f, ActionKind::Compile, key(b"k")).action.digest);
        assert_ne!(
            a,
            action(f, ActionKind::Compile, key(b"other")).action.digest
        );
        assert_ne!(a, action(f, ActionKind::Install, key(b"k")).action.digest);
        assert_ne!(
            a,
            action(Function::Blake3, ActionKind::Compile, key(b"k"))
                .action
                .digest
        );
    }
}
