//! The layer's compressed pieces are remembered by what they hold (`cache/members`): a layer
//! made from remembered members is the layer made from nothing, a remembered member that is not
//! its piece's is never used, and `cache gc` drops them.

mod common;

use std::path::Path;

use common::Ws;

/// How many pieces the last amd64 layer was cut into, and how many were remembered.
fn pieces(ws: &Ws) -> (usize, usize) {
    let out = ws.kbuild(&["log", "//6.6.x:amd64", "--action", "layer"]);
    let log = String::from_utf8_lossy(&out.stdout);
    let line = (log.lines())
        .find_map(|l| l.strip_prefix("layer: "))
        .unwrap_or_else(|| panic!("no count of pieces in the layer's log:\n{log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

fn members(ws: &Ws) -> Vec<std::path::PathBuf> {
    common::files_under(&ws.cache.join("members"))
}

/// A new workspace whose cache holds nothing but `from`'s members, each passed through `edit`.
fn with_members_of(from: &Ws, edit: impl Fn(Vec<u8>) -> Vec<u8>) -> Ws {
    let ws = Ws::new();
    let root = from.cache.join("members");
    for file in members(from) {
        let to = ws
            .cache
            .join("members")
            .join(file.strip_prefix(&root).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, edit(std::fs::read(&file).unwrap())).unwrap();
    }
    ws
}

fn out(ws: &Ws) -> std::collections::BTreeMap<String, Vec<u8>> {
    common::contents(&ws.path().join("out"))
}

#[test]
fn remembered_members_make_the_same_layer_and_another_pieces_are_not_used() {
    let first = Ws::new();
    first.run(&["//6.6.x:amd64"], 0);
    let (cut, recalled) = pieces(&first);
    assert!(
        cut >= 1 && recalled == 0,
        "{cut} pieces, {recalled} remembered"
    );
    assert!(!members(&first).is_empty());

    // Another cache with the first one's members: every piece is remembered, and the image
    // layout is byte for byte the first one's.
    let second = with_members_of(&first, |record| record);
    second.run(&["//6.6.x:amd64"], 0);
    assert_eq!(pieces(&second), (cut, cut));
    assert!(
        out(&second) == out(&first),
        "other bytes from remembered members"
    );

    // Members that are another piece's, in records that are whole (their own digest right):
    // only the check against the piece refuses them, and the layer is compressed again.
    let other = {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"another piece").unwrap();
        gz.finish().unwrap()
    };
    let third = with_members_of(&first, |_| {
        let mut record = blake3::hash(&other).as_bytes().to_vec();
        record.extend_from_slice(&other);
        record
    });
    third.run(&["//6.6.x:amd64"], 0);
    assert_eq!(pieces(&third), (cut, 0));
    assert!(out(&third) == out(&first), "a wrong member was used");

    // They are a memo: `cache du` counts them, `cache gc` drops them.
    let du = third.kbuild(&["cache", "du"]);
    assert!(String::from_utf8_lossy(&du.stdout).contains("compressed layer pieces"));
    let gc = third.kbuild(&["cache", "gc", "--max-size", "0"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(members(&third).is_empty());
    assert!(Path::new(&third.cache.join("members")).is_dir());
}
