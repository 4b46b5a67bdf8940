//! A cache that heals itself: whatever is corrupt, truncated or missing in it, the next run (or
//! `kbuild cache verify`, then a run) exits 0 with `out/` equal to a clean build's, and never
//! serves a corrupt byte. An entry that cannot be fully materialised is a miss, not a failure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::contents;

use common::Ws;

/// A workspace built once, with what its clean `out/` holds.
fn built() -> (Ws, BTreeMap<String, Vec<u8>>) {
    let ws = Ws::new();
    ws.run(&[], 0);
    let clean = contents(&ws.path().join("out"));
    assert!(
        clean.keys().any(|k| k.ends_with("amd64/kernel")),
        "{:?}",
        clean.keys()
    );
    (ws, clean)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

/// The run after the damage succeeds, out/ is a clean build's, and the run after is a null build.
fn heals(ws: &Ws, clean: &BTreeMap<String, Vec<u8>>) {
    let r = ws.run(&[], 0);
    assert_eq!(&contents(&ws.path().join("out")), clean, "{}", r.stderr);
    let again = ws.kbuild(&["run"]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 executed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn blobs_and_trees_removed_under_out_are_rebuilt() {
    let (ws, clean) = built();
    for dir in ["blobs", "trees"] {
        std::fs::remove_dir_all(ws.cache.join(dir)).unwrap();
    }
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    heals(&ws, &clean);
}

#[test]
fn truncated_action_cache_entries_are_misses_and_replaced() {
    let (ws, clean) = built();
    for entry in files_under(&ws.cache.join("ac")) {
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..bytes.len() / 3]).unwrap();
    }
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    heals(&ws, &clean);
    for entry in files_under(&ws.cache.join("ac")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{} was left truncated",
            entry.display()
        );
    }
}

/// The kernel's blob in the cache, by the digest in its package's output.
fn kernel_blob(ws: &Ws) -> PathBuf {
    let kernel = std::fs::read(ws.path().join("out/6.6.x/amd64/kernel")).unwrap();
    let digest = blake3::hash(&kernel).to_hex().to_string();
    ws.cache.join("blobs").join(&digest[..2]).join(&digest[2..])
}

fn flip_a_byte(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_run_notices_a_blob_whose_stat_changed() {
    let (ws, clean) = built();
    let blob = kernel_blob(&ws);
    let mtime = std::fs::metadata(&blob).unwrap().modified().unwrap();
    flip_a_byte(&blob);
    // Even with its mtime put back: the ctime still moved.
    std::fs::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // `--format json` takes the full path, as any change would.
    let r = ws.run(&[], 0);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(contents(&ws.path().join("out")), clean);
}

#[test]
fn after_cache_verify_no_corrupt_byte_reaches_out() {
    let (ws, clean) = built();
    flip_a_byte(&kernel_blob(&ws));
    let verify = ws.kbuild(&["cache", "verify"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("removed:") && stdout.contains("blob does not hold"),
        "{stdout}"
    );
    assert!(
        stdout.contains("action cache entry names a missing or corrupt blob"),
        "{stdout}"
    );
    // The plain text run: the null-build fast path must not vouch for what verify removed.
    let run = ws.kbuild(&["run"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(contents(&ws.path().join("out")), clean);
    let verify = ws.kbuild(&["cache", "verify"]);
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains("0 problem(s)"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn a_blob_replaced_by_a_directory_is_removed_and_rebuilt() {
    let (ws, clean) = built();
    let blob = kernel_blob(&ws);
    std::fs::remove_file(&blob).unwrap();
    std::fs::create_dir_all(blob.join("inside")).unwrap();
    let verify = ws.kbuild(&["cache", "verify"]);
    assert_eq!(verify.status.code(), Some(0));
    assert!(!blob.exists(), "verify removed the directory");
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    heals(&ws, &clean);
    // Without verify too: the run itself gets past a directory in a blob's place.
    let blob = kernel_blob(&ws);
    std::fs::remove_file(&blob).unwrap();
    std::fs::create_dir_all(blob.join("inside")).unwrap();
    std::fs::remove_dir_all(ws.cache.join("trees")).unwrap();
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    heals(&ws, &clean);
}

#[test]
fn a_removed_cache_leaves_no_dangling_link_in_out() {
    let (ws, clean) = built();
    std::fs::remove_dir_all(&ws.cache).unwrap();
    heals(&ws, &clean);
}

#[test]
fn leftovers_of_killed_runs_are_swept_when_no_run_is_alive() {
    let (ws, _) = built();
    let tmp = ws.cache.join("tmp");
    std::fs::create_dir_all(tmp.join("action-killed/out")).unwrap();
    std::fs::create_dir_all(tmp.join("tree-killed/t")).unwrap();
    std::fs::write(tmp.join(".tmpHalfWritten"), b"{").unwrap();
    std::fs::write(ws.cache.join("keys/ab/.tmpOld"), b"{").unwrap_or_else(|_| {
        std::fs::create_dir_all(ws.cache.join("keys/ab")).unwrap();
        std::fs::write(ws.cache.join("keys/ab/.tmpOld"), b"{").unwrap();
    });
    ws.run(&[], 0);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![".users".to_string()]);
    // Older kbuilds wrote temp files beside entries: verify removes those.
    let verify = ws.kbuild(&["cache", "verify"]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains(".tmpOld"));
    assert!(!ws.cache.join("keys/ab/.tmpOld").exists());
}

/// Memos are believed by later runs without their bytes: remembered sums damaged into other
/// valid hex, and a compressed piece damaged behind a digest made to match, are each found by
/// `cache verify` and removed; the sound ones stay.
#[test]
fn cache_verify_removes_memos_that_lie() {
    let (ws, clean) = built();
    let sums = files_under(&ws.cache.join("sums"));
    let members = files_under(&ws.cache.join("members"));
    assert!(
        sums.len() >= 2 && !members.is_empty(),
        "{sums:?} {members:?}"
    );
    let lying_sums = &sums[0];
    std::fs::write(
        lying_sums,
        format!("{} {}\n", "0".repeat(40), "0".repeat(64)),
    )
    .unwrap();
    let lying_member = &members[0];
    let mut record = std::fs::read(lying_member).unwrap();
    // A byte amid the deflate data: the member inflates to other bytes, or not at all.
    let amid = 32 + (record.len() - 32) / 2;
    record[amid] ^= 0x55;
    let digest = *blake3::hash(&record[32..]).as_bytes();
    record[..32].copy_from_slice(&digest);
    std::fs::write(lying_member, record).unwrap();

    let verify = ws.kbuild(&["cache", "verify"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{stdout}");
    for what in [
        "remembered sums are not those of their blob",
        "compressed layer piece is damaged",
    ] {
        assert_eq!(stdout.matches(what).count(), 1, "{what}:\n{stdout}");
    }
    assert!(!lying_sums.exists() && !lying_member.exists());
    assert!(sums[1].exists());
    heals(&ws, &clean);
}

#[test]
fn cache_verify_on_a_healthy_cache_finds_nothing_and_keeps_what_why_reads() {
    let (ws, _) = built();
    let inputs: Vec<_> = std::fs::read_dir(ws.cache.join("keys/inputs"))
        .unwrap()
        .collect();
    assert!(!inputs.is_empty(), "a run keeps its inputs' texts");
    let verify = ws.kbuild(&["cache", "verify"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr),
    );
    assert_eq!(verify.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("0 problem(s)"), "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_dir(ws.cache.join("keys/inputs"))
            .unwrap()
            .count(),
        inputs.len()
    );
    // `why` still names the option that changed.
    ws.set_amd64_cpus(32);
    let why = ws.why("//6.6.x:amd64");
    assert!(why.contains("CONFIG_NR_CPUS"), "{why}");
}

/// `kbuild run` in plain text (the null-build fast path) after `damage`: it must not vouch for
/// what changed behind out/, and out/ ends as a clean build's.
fn null_build_notices(damage: impl FnOnce(&Ws)) {
    let (ws, clean) = built();
    // The record the fast path reads is written by this run.
    assert!(ws.kbuild(&["run"]).status.success());
    damage(&ws);
    let run = ws.kbuild(&["run"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(contents(&ws.path().join("out")), clean);
}

#[test]
fn the_null_build_notices_a_byte_changed_behind_out() {
    null_build_notices(|ws| {
        let kernel = ws.path().join("out/6.6.x/amd64/kernel");
        let real = std::fs::canonicalize(&kernel).unwrap();
        flip_a_byte(&real);
    });
}

#[test]
fn the_null_build_notices_trees_and_blobs_removed_under_out() {
    null_build_notices(|ws| std::fs::remove_dir_all(ws.cache.join("trees")).unwrap());
    null_build_notices(|ws| std::fs::remove_dir_all(ws.cache.join("blobs")).unwrap());
}

#[test]
fn wide_damage_is_repaired_in_one_run_that_says_so() {
    use std::io::Write;
    let (ws, clean) = built();
    // A byte appended to every file of every tree: every entry is damaged at once.
    for file in files_under(&ws.cache.join("trees")) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&file) {
            let _ = f.write_all(b"\n");
        }
    }
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    let r = ws.run(&[], 0);
    assert!(r.stderr.contains("repaired"), "{}", r.stderr);
    assert_eq!(contents(&ws.path().join("out")), clean, "{}", r.stderr);
    let again = ws.kbuild(&["run"]);
    assert!(again.status.success());
}
