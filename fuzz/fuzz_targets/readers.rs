//! The small text readers kbuild runs on files it did not write: Kconfig files (the committed
//! configs and fragments), patch files (the linter), kernel.lock and kernel.local.lock lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = kbuild::kconfig::parse(text);
    let _ = kbuild::kconfig::diff(&config, &kbuild::kconfig::parse(""));
    let _ = kbuild::kconfig::off_symbols(text, &config);
    let _ = kbuild::maint::patch_lint::check_text("0001-fuzz.patch", text);
    let _ = kbuild::manifest::pins::read_lock(text);
});
