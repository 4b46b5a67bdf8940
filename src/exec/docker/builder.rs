//! Making a builder image without a registry: debootstrap a Debian root, import it as an image.

use std::path::Path;
use std::process::Command;

use futures_util::StreamExt;

use super::Docker;
use super::endpoint::LOCAL;
use crate::arch::Arch;
use crate::exec::ExecError;

/// What a kernel build, its module and header installs and its tools need, plus the GNU cross
/// compilers for the other arches kbuild knows.
pub fn packages(host: Option<Arch>) -> Vec<String> {
    let mut list: Vec<String> = [
        "make",
        "gcc",
        "libc6-dev",
        "bc",
        "bison",
        "flex",
        "libelf-dev",
        "libssl-dev",
        "cpio",
        "kmod",
        "xz-utils",
        "perl",
        "python3",
        "patch",
        "pkg-config",
        "rsync",
        // Tools whose source builds with CMake, in C++ (bcc).
        "cmake",
        "g++",
    ]
    .map(String::from)
    .to_vec();
    for arch in Arch::ALL {
        if Some(arch) != host {
            let prefix = arch.gnu_prefix();
            list.push(format!(
                "gcc-{}",
                prefix.trim_end_matches('-').replace('_', "-")
            ));
        }
    }
    list
}

fn failed(message: String) -> ExecError {
    ExecError::unavailable(
        message,
        "debootstrap needs root and a reachable Debian mirror (--mirror); or build an image \
         yourself and name it in the manifest's `builder`",
    )
}

/// Debootstraps `suite` with `packages` into `root`.
pub fn bootstrap(
    root: &Path,
    suite: &str,
    mirror: &str,
    packages: &[String],
) -> Result<(), ExecError> {
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite)
        .arg(root)
        .arg(mirror)
        .status()
        .map_err(|e| failed(format!("cannot start debootstrap: {e}")))?;
    if !status.success() {
        return Err(failed(format!("debootstrap {suite} failed ({status})")));
    }
    // Package caches and logs only make the image bigger.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "var/log"] {
        let _ = Command::new("find")
            .arg(root.join(dir))
            .args(["-type", "f", "-delete"])
            .status();
    }
    Ok(())
}

/// Packs `root` and imports it into the local daemon as `tags` (`docker import`); returns the ID.
pub fn import(docker: &Docker, root: &Path, tags: &[String]) -> Result<String, ExecError> {
    let tar = root.with_extension("tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .map_err(|e| failed(format!("cannot start tar: {e}")))?;
    if !status.success() {
        return Err(failed(format!("packing the root failed ({status})")));
    }
    let bytes = std::fs::read(&tar).map_err(|e| failed(format!("reading the root tar: {e}")))?;
    let _ = std::fs::remove_file(&tar);
    let client = docker.client(LOCAL)?;
    let mut id = String::new();
    for (i, tag) in tags.iter().enumerate() {
        let (repo, version) = split_tag(tag);
        if i > 0 {
            docker
                .runtime
                .block_on(
                    client.tag_image(
                        &id,
                        Some(
                            bollard::query_parameters::TagImageOptionsBuilder::default()
                                .repo(repo)
                                .tag(version)
                                .build(),
                        ),
                    ),
                )
                .map_err(|e| failed(format!("tagging {tag}: {e}")))?;
            continue;
        }
        let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(version)
            .build();
        let body = bollard::body_full(bytes.clone().into());
        docker.runtime.block_on(async {
            let mut progress = client.create_image(Some(options), Some(body), None);
            while let Some(item) = progress.next().await {
                item.map_err(|e| failed(format!("importing {tag}: {e}")))?;
            }
            Ok::<(), ExecError>(())
        })?;
        id = docker.image_id(LOCAL, tag)?;
    }
    Ok(id)
}

/// `repo:tag` → (`repo`, `tag`); a reference without a tag is `latest`.
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_a_registry_port() {
        assert_eq!(
            split_tag("kbuild/builder:bookworm"),
            ("kbuild/builder", "bookworm")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/builder"),
            ("127.0.0.1:5000/builder", "latest")
        );
        assert_eq!(split_tag("debian"), ("debian", "latest"));
    }

    #[test]
    fn cross_compilers_for_the_other_arches() {
        let list = packages(Some(Arch::X86_64));
        assert!(list.contains(&"gcc-aarch64-linux-gnu".to_string()));
        assert!(list.contains(&"gcc-riscv64-linux-gnu".to_string()));
        assert!(!list.iter().any(|p| p.starts_with("gcc-x86")));
        assert!(packages(Some(Arch::Aarch64)).contains(&"gcc-x86-64-linux-gnu".to_string()));
    }
}
