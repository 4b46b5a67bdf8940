//! Hostile sources: tarballs and patches crafted (with the `tar` crate) to write outside the
//! tree, each run against a canary directory outside the workspace that must stay untouched.
//! kbuild runs as root in the quick start, so these run as whoever runs the tests.

mod common;

use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::Ws;

/// A directory outside the workspace with one file in it, and what it looked like.
struct Canary {
    dir: tempfile::TempDir,
    before: Vec<(PathBuf, u32, u64)>,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("victim"), b"precious").unwrap();
        let mut canary = Canary {
            dir,
            before: Vec::new(),
        };
        canary.before = canary.listing();
        canary
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every entry with its mode and link count: a new file, a chmod or a new hard link shows.
    fn listing(&self) -> Vec<(PathBuf, u32, u64)> {
        let mut entries: Vec<_> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                (e.path(), meta.mode(), meta.nlink())
            })
            .collect();
        entries.sort();
        entries
    }

    fn assert_untouched(&self) {
        assert_eq!(self.listing(), self.before, "the canary changed");
        assert_eq!(
            std::fs::read(self.path().join("victim")).unwrap(),
            b"precious"
        );
    }
}

/// The fake kernel under `linux-6.6.71/`, then whatever `hostile` appends.
fn tarball(ws: &Ws, hostile: impl FnOnce(&mut tar::Builder<std::fs::File>)) {
    let path = ws.path().join("sources/linux-6.6.71.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    tar.follow_symlinks(false);
    tar.append_dir_all("linux-6.6.71", common::fixture())
        .unwrap();
    hostile(&mut tar);
    tar.finish().unwrap();
    drop(tar);
    let pin = ws.kbuild(&["pin", "6.6.x"]);
    assert!(
        pin.status.success(),
        "{}",
        String::from_utf8_lossy(&pin.stderr)
    );
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header
}

fn symlink(tar: &mut tar::Builder<std::fs::File>, path: &str, target: &str) {
    let mut h = header(tar::EntryType::Symlink, 0);
    tar.append_link(&mut h, path, target).unwrap();
}

fn file(tar: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, data.len() as u64);
    tar.append_data(&mut h, path, data).unwrap();
}

/// Two symlinks that each look inside the tree when read alone and together lead to `/`:
/// `d0/…/d39/l -> ../..×40` (the tree's root), then `x -> d0/…/d39/l/` + `..`×40.
fn chain(tar: &mut tar::Builder<std::fs::File>) {
    let dirs: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let deep = dirs.join("/");
    symlink(tar, &format!("linux-6.6.71/{deep}/l"), &"../".repeat(40));
    symlink(
        tar,
        "linux-6.6.71/x",
        &format!("{deep}/l/{}", "../".repeat(40)),
    );
}

fn refused(ws: &Ws, needle: &str) {
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(r.stderr.contains(needle), "{}", r.stderr);
    assert!(
        r.stderr.contains("damaged or hostile") || r.stderr.contains("a kernel patch never needs"),
        "{}",
        r.stderr
    );
    // Nothing was cached: the same refusal again, not a cached tree.
    let again = ws.run(&["//6.6.x:amd64"], 1);
    assert!(again.stderr.contains(needle), "{}", again.stderr);
}

#[test]
fn a_file_behind_chained_symlinks_is_refused() {
    let canary = Canary::new();
    let ws = Ws::new();
    let planted = canary.path().join("planted");
    tarball(&ws, |tar| {
        chain(tar);
        let inside = planted.strip_prefix("/").unwrap().display().to_string();
        file(tar, &format!("linux-6.6.71/x/{inside}"), b"pwned");
    });
    refused(&ws, "lies behind the symlink `x`");
    canary.assert_untouched();
}

#[test]
fn a_hard_link_through_chained_symlinks_is_refused() {
    let canary = Canary::new();
    let ws = Ws::new();
    let victim = canary.path().join("victim");
    tarball(&ws, |tar| {
        chain(tar);
        let inside = victim.strip_prefix("/").unwrap().display().to_string();
        let mut h = header(tar::EntryType::Link, 0);
        tar.append_link(
            &mut h,
            "linux-6.6.71/stolen",
            format!("linux-6.6.71/x/{inside}"),
        )
        .unwrap();
    });
    refused(&ws, "lies behind the symlink `x`");
    canary.assert_untouched();
}

#[test]
fn a_hard_link_to_anything_but_an_extracted_file_is_refused() {
    let ws = Ws::new();
    tarball(&ws, |tar| {
        let mut h = header(tar::EntryType::Link, 0);
        tar.append_link(&mut h, "linux-6.6.71/stolen", "linux-6.6.71/not-yet")
            .unwrap();
    });
    refused(&ws, "which is not a file of the tree");
}

#[test]
fn a_chain_that_leads_outside_is_refused_even_with_nothing_behind_it() {
    let ws = Ws::new();
    tarball(&ws, chain);
    refused(&ws, "leads outside the tree through other symlinks");
}

#[test]
fn a_plain_symlink_out_is_refused() {
    let canary = Canary::new();
    let ws = Ws::new();
    let target = canary.path().display().to_string();
    tarball(&ws, |tar| symlink(tar, "linux-6.6.71/esc", &target));
    refused(&ws, "outside the tree");
    canary.assert_untouched();
}

#[test]
fn a_device_node_is_refused() {
    let ws = Ws::new();
    tarball(&ws, |tar| {
        let mut h = header(tar::EntryType::Char, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        tar.append_data(&mut h, "linux-6.6.71/null", std::io::empty())
            .unwrap();
    });
    refused(&ws, "is a device, fifo or other special file");
}

#[test]
fn a_patch_that_adds_a_symlink_out_of_the_tree_is_refused() {
    let canary = Canary::new();
    let ws = Ws::new();
    let target = canary.path().display().to_string();
    ws.write(
        "kernel/6.6.x/patches/0002-add-a-link.patch",
        &format!(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: Test <test@example.com>\nSubject: [PATCH] add a link\n\nSigned-off-by: Test <test@example.com>\n---\ndiff --git a/esc b/esc\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/esc\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
        ),
    );
    refused(&ws, "makes `esc` a symlink that leads outside the tree");
    canary.assert_untouched();
}

#[test]
fn a_decompression_bomb_stops_at_the_limit_with_a_clear_error() {
    let ws = Ws::new();
    tarball(&ws, |tar| {
        file(tar, "linux-6.6.71/zeros", &vec![0; 4 << 20]);
    });
    let out = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("KBUILD_UNPACK_MAX_BYTES", "1000000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unpacks to more than 1000000 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("KBUILD_UNPACK_MAX_BYTES=N"), "{stderr}");
    let out = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("KBUILD_UNPACK_MAX_ENTRIES", "10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unpacks to more than 10 entries"),
        "{stderr}"
    );
    // Within the limits it is an ordinary tarball.
    ws.run(&["//6.6.x:amd64"], 0);
}

#[test]
fn a_tarball_without_one_top_directory_is_named_as_the_cause() {
    let ws = Ws::new();
    let path = ws.path().join("sources/linux-6.6.71.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    tar.append_dir_all(".", common::fixture()).unwrap();
    tar.finish().unwrap();
    drop(tar);
    assert!(ws.kbuild(&["pin", "6.6.x"]).status.success());
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(
        r.stderr.contains("has no single top directory"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("does not apply"),
        "no patch is blamed: {}",
        r.stderr
    );
}

/// Unmounts the test's small filesystem however the test ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "mounts a tmpfs (root): run with --include-ignored"]
fn a_full_disk_while_unpacking_says_so() {
    let ws = Ws::new();
    // 8 MB of zeros compress to almost nothing: the fetch fits, the unpack cannot.
    let path = ws.path().join("sources/linux-6.6.71.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("linux-6.6.71", common::fixture())
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 8 << 20);
    tar.append_data(
        &mut h,
        "linux-6.6.71/zeros",
        std::io::repeat(0).take(8 << 20),
    )
    .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let line = ws.source_line();
    let gz_line = line.replace("linux-6.6.71.tar\"", "linux-6.6.71.tar.gz\"");
    ws.edit("kernel.kdl", &line, &gz_line);
    assert!(ws.kbuild(&["pin", "6.6.x"]).status.success());

    let small = ws.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _mount = Mount(small.clone());
    let out = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("KBUILD_CACHE", small.join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("the disk holding the cache is full"),
        "{stderr}"
    );
    assert!(!stderr.contains("hostile"), "{stderr}");
}
