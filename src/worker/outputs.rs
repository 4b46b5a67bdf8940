//! What a command left at its declared output paths, uploaded and described as REAPI's
//! `ActionResult` expects: files with their digests, directories as `Tree`s, symlinks as
//! symlinks. Nothing is followed: a symlink the command made stays a symlink, so an output
//! can never read a file outside the action's directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use crate::remote::reapi::Blob;
use crate::remote::{Function, Source, Transport, digest};

/// Blobs to upload: files by path, messages by bytes.
#[derive(Default)]
pub struct Uploads {
    files: BTreeMap<String, PathBuf>,
    messages: BTreeMap<String, (re::Digest, Vec<u8>)>,
    digests: BTreeMap<String, re::Digest>,
}

impl Uploads {
    fn file(&mut self, digest: &re::Digest, path: &Path) {
        self.digests.insert(digest.hash.clone(), digest.clone());
        self.files.insert(digest.hash.clone(), path.to_path_buf());
    }

    pub fn message(&mut self, blob: Blob) {
        self.digests
            .insert(blob.digest.hash.clone(), blob.digest.clone());
        self.messages
            .insert(blob.digest.hash.clone(), (blob.digest, blob.data));
    }

    /// Uploads what the server lacks; gives the bytes sent.
    pub fn send(&self, cas: &dyn Transport, function: Function) -> Result<u64, String> {
        let all: Vec<re::Digest> = self.digests.values().cloned().collect();
        let missing = cas
            .find_missing(function, &all)
            .map_err(|e| format!("asking which outputs the server lacks: {e}"))?;
        let mut blobs = Vec::new();
        let mut bytes = 0;
        for d in &missing {
            let source = match (self.files.get(&d.hash), self.messages.get(&d.hash)) {
                (_, Some((_, data))) => Source::Bytes(data),
                (Some(path), None) => Source::File(path),
                (None, None) => return Err(format!("the server asked for {} unasked", d.hash)),
            };
            bytes += d.size_bytes.max(0) as u64;
            blobs.push((d.clone(), source));
        }
        cas.write_blobs(function, &blobs)
            .map_err(|e| format!("uploading the outputs: {e}"))?;
        Ok(bytes)
    }
}

/// Describes the outputs under `root` into `result`, noting their blobs in `uploads`. `paths`
/// are REAPI's `output_paths` (files or directories); a path the command did not make is
/// left out, as REAPI says.
pub fn collect(
    function: Function,
    root: &Path,
    paths: &[String],
    result: &mut re::ActionResult,
    uploads: &mut Uploads,
) -> Result<(), String> {
    for rel in paths {
        let at = root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            continue;
        };
        let failed = |e: std::io::Error| format!("reading the output `{rel}`: {e}");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&at).map_err(failed)?;
            result.output_symlinks.push(re::OutputSymlink {
                path: rel.clone(),
                target: target.to_string_lossy().into_owned(),
                ..Default::default()
            });
        } else if meta.is_dir() {
            let mut children = BTreeMap::new();
            let root_dir = directory(function, &at, &mut children, uploads).map_err(failed)?;
            let tree = re::Tree {
                root: Some(root_dir),
                children: children.into_values().collect(),
            };
            let blob = Blob::of(function, &tree);
            result.output_directories.push(re::OutputDirectory {
                path: rel.clone(),
                tree_digest: Some(blob.digest.clone()),
                ..Default::default()
            });
            uploads.message(blob);
        } else if meta.is_file() {
            let (digest, _) = digest::of_file(function, &at).map_err(failed)?;
            uploads.file(&digest, &at);
            result.output_files.push(re::OutputFile {
                path: rel.clone(),
                digest: Some(digest),
                is_executable: meta.permissions().mode() & 0o111 != 0,
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// The `Directory` message of `dir`, with every directory below it added to `children` by hash
/// and every file to `uploads`. Entries are sorted by name, as REAPI requires. Sockets, pipes
/// and devices are left out.
fn directory(
    function: Function,
    dir: &Path,
    children: &mut BTreeMap<String, re::Directory>,
    uploads: &mut Uploads,
) -> std::io::Result<re::Directory> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut out = re::Directory::default();
    for name in names {
        let at = dir.join(&name);
        let name = name.to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&at)?;
        if meta.file_type().is_symlink() {
            out.symlinks.push(re::SymlinkNode {
                name,
                target: std::fs::read_link(&at)?.to_string_lossy().into_owned(),
                ..Default::default()
            });
        } else if meta.is_dir() {
            let sub = directory(function, &at, children, uploads)?;
            let blob = Blob::of(function, &sub);
            children.insert(blob.digest.hash.clone(), sub);
            out.directories.push(re::DirectoryNode {
                name,
                digest: Some(blob.digest),
            });
        } else if meta.is_file() {
            let (digest, _) = digest::of_file(function, &at)?;
            uploads.file(&digest, &at);
            out.files.push(re::FileNode {
                name,
                digest: Some(digest),
                is_executable: meta.permissions().mode() & 0o111 != 0,
                ..Default::default()
            });
        }
    }
    Ok(out)
}
