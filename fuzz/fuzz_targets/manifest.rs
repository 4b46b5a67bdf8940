//! The manifest loader on any text: a spanned error or a model, never a panic, a stack overflow
//! or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let root = std::path::Path::new("/nonexistent-kbuild-fuzz");
    let _ = kbuild::manifest::parse(root, "kernel.kdl", text.to_string());
});
