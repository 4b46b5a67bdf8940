//! Writing images into an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), with an
//! `org.opencontainers.image.ref.name` entry per reference, so that `skopeo inspect oci:DIR:REF`
//! and `umoci unpack` find them. Entries of earlier runs stay unless a reference moves.

use std::path::{Path, PathBuf};

use super::{Descriptor, Index, REF_NAME};

/// A reference and what it names.
#[derive(Clone, Debug)]
pub struct Entry {
    pub reference: String,
    pub descriptor: Descriptor,
}

/// Adds `entries` to the layout at `out`, linking the blobs found under each of `blob_dirs`
/// (directories holding `blobs/sha256/…`).
pub fn write(
    out: &Path,
    entries: &[Entry],
    (blob_dirs, ledger): (&[PathBuf], &crate::ledger::Ledger),
) -> std::io::Result<()> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for dir in blob_dirs {
        let Ok(files) = std::fs::read_dir(dir.join("blobs/sha256")) else {
            continue;
        };
        for file in files {
            let file = file?;
            let dest = blobs.join(file.file_name());
            // Blob names are content digests: one that is linked to this very blob already
            // stays (maybe a concurrent run linked it a moment ago); another file of that name
            // may hold bytes the cache has since found corrupt, and is replaced.
            if same_file(&file.path(), &dest) {
                continue;
            }
            let tmp = blobs.join(format!(".{}.tmp", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            ledger.link_or_copy(&file.path(), &tmp)?;
            let before = ledger.vouched_path(&tmp);
            std::fs::rename(&tmp, &dest)?;
            ledger.note(&dest, before);
        }
    }
    write_index(out, entries)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// `oci-layout`, and `index.json` with `entries` replacing the earlier entries of their references.
fn write_index(out: &Path, entries: &[Entry]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(
        &out.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let path = out.join("index.json");
    let mut index = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
        .unwrap_or_else(|| Index::new(Vec::new()));
    index.manifests.retain(|d| {
        !entries
            .iter()
            .any(|e| d.annotations.get(REF_NAME) == Some(&e.reference))
    });
    for entry in entries {
        let mut descriptor = entry.descriptor.clone();
        descriptor
            .annotations
            .insert(REF_NAME.into(), entry.reference.clone());
        index.manifests.push(descriptor);
    }
    index.manifests.sort_by(|a, b| {
        a.annotations
            .get(REF_NAME)
            .cmp(&b.annotations.get(REF_NAME))
    });
    crate::fsutil::write_atomic(
        &path,
        &serde_json::to_vec_pretty(&index).expect("indexes serialise"),
    )
}
