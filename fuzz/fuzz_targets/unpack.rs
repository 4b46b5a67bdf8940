//! The tar unpacker on any bytes, with a tree-escape oracle: whatever the archive holds, nothing
//! outside the destination changes (a canary beside it stays as it was, nothing else appears
//! beside it), and every symlink in the result resolves inside the tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sandbox = tempfile::tempdir().unwrap();
    let canary = sandbox.path().join("canary");
    std::fs::write(&canary, b"precious").unwrap();
    let archive = sandbox.path().join("in.tar");
    std::fs::write(&archive, data).unwrap();
    let dest = sandbox.path().join("tree");
    let limits = kbuild::unpack::Limits {
        max_bytes: 64 << 20,
        max_entries: 10_000,
        max_path: 4096,
    };
    let result = kbuild::unpack::unpack(&archive, &dest, &limits);
    assert_eq!(std::fs::read(&canary).unwrap(), b"precious");
    let mut beside: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["canary", "in.tar", "tree"], "{result:?}");
    if result.is_ok() {
        assert_eq!(kbuild::unpack::escaping_link(&dest).unwrap(), None);
    }
});
