//! What a hostile remote cache can send: bytes read as an `ActionResult` and as an output
//! `Tree`, the tree laid out on disk as a hit is. Nothing may panic, and nothing may appear
//! outside the directory the tree is laid out in.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    kbuild::remote::fuzzing::read_answer(data, &dest);
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(beside.len() <= 1, "something was written beside the tree");
    if dest.is_dir() {
        let escaping = kbuild::unpack::escaping_link(&dest).unwrap();
        assert!(escaping.is_none(), "a symlink leads out: {escaping:?}");
    }
});
