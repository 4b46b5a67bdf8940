//! Test: one kernel target booted under qemu with kbuild's initramfs, its console judged.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "test",
    code: &[
        "recipe/test/mod.rs",
        "recipe/test/init.rs",
        "recipe/test/initramfs.rs",
        "machine.rs",
        "cpio.rs",
        "ktap.rs",
        "verdict.rs",
    ],
    // /init is compiled and qemu started through the executor, as any command.
    toolchain: true,
    // `kbuild test` reads every result back, cached or not, for its summary and JUnit file.
    held: true,
    ..PLAIN
};
