//! The machine each arch's kernels are boot-tested on: qemu's system emulator, its board, the firmware it loads,
//! the serial console, and the kernel options without which a boot test cannot say anything.

use crate::arch::Arch;

/// One arch's test machine.
pub struct Machine {
    pub program: &'static str,
    /// The board and CPU; TCG by default, KVM added where the host can (see [`accel`]).
    pub args: &'static [&'static str],
    /// The firmware files qemu loads: keyed by content with the program, as a compiler is.
    pub firmware: &'static [&'static str],
    /// `-bios`, when the board's default firmware is one of `firmware`, given by path so the
    /// file keyed is the file loaded.
    pub bios: Option<&'static str>,
    pub console: &'static str,
    /// Kernel parameters the board needs under emulation, after `console=`.
    pub append: &'static str,
    /// Options the console needs on this board, with what each is for.
    pub needs: &'static [(&'static str, &'static str)],
    /// The Debian packages that have the emulator and its firmware.
    pub packages: &'static str,
    /// Whether qemu takes a compressed kernel as it is (x86's bzImage and arm64's Image.gz);
    /// riscv64's loader takes a plain Image only.
    pub takes_compressed: bool,
}

const OPENSBI: &str = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin";

pub fn machine(arch: Arch) -> Machine {
    match arch {
        Arch::X86_64 => Machine {
            program: "qemu-system-x86_64",
            args: &["-M", "pc", "-cpu", "max"],
            firmware: &[
                "/usr/share/seabios/bios-256k.bin",
                "/usr/share/qemu/linuxboot_dma.bin",
            ],
            bios: None,
            console: "ttyS0",
            // Under TCG on a loaded host the boot's check that the IO-APIC timer ticks can
            // fail and panic ("IO-APIC + timer doesn't work!"): a verdict on the host, not the
            // kernel. Virtual machines skip that check for the same reason.
            append: "no_timer_check",
            needs: &[
                ("CONFIG_SERIAL_8250", "the PC's serial port"),
                ("CONFIG_SERIAL_8250_CONSOLE", "a console on ttyS0"),
            ],
            packages: "qemu-system-x86",
            takes_compressed: true,
        },
        Arch::Aarch64 => Machine {
            program: "qemu-system-aarch64",
            args: &["-M", "virt", "-cpu", "max"],
            firmware: &[],
            bios: None,
            console: "ttyAMA0",
            append: "",
            needs: &[
                ("CONFIG_SERIAL_AMBA_PL011", "the virt board's PL011 UART"),
                ("CONFIG_SERIAL_AMBA_PL011_CONSOLE", "a console on ttyAMA0"),
            ],
            packages: "qemu-system-arm",
            takes_compressed: true,
        },
        Arch::Riscv64 => Machine {
            program: "qemu-system-riscv64",
            args: &["-M", "virt"],
            firmware: &[OPENSBI],
            bios: Some(OPENSBI),
            console: "ttyS0",
            append: "",
            needs: &[
                ("CONFIG_SERIAL_8250", "the virt board's 16550 UART"),
                ("CONFIG_SERIAL_8250_CONSOLE", "a console on ttyS0"),
                (
                    "CONFIG_SERIAL_OF_PLATFORM",
                    "finding the UART in the device tree",
                ),
            ],
            packages: "qemu-system-misc and opensbi",
            takes_compressed: false,
        },
    }
}

/// What every boot test needs of a kernel, whatever the arch; `modules` when it loads some.
pub fn common_needs(modules: bool) -> Vec<(&'static str, &'static str)> {
    let mut needs = vec![
        ("CONFIG_BLK_DEV_INITRD", "booting the test's initramfs"),
        ("CONFIG_BINFMT_ELF", "running the test's /init"),
        ("CONFIG_PRINTK", "kernel messages on the console"),
        ("CONFIG_TTY", "a console"),
        ("CONFIG_PROC_FS", "mounting /proc"),
        ("CONFIG_SYSFS", "mounting /sys"),
    ];
    if modules {
        needs.push(("CONFIG_MODULES", "loading the test's modules"));
    }
    needs
}

/// KVM for a guest of the host's own arch when `KBUILD_TEST_KVM=1` asks for it and /dev/kvm
/// opens: the same test, faster. Asked for, not detected: a /dev/kvm that opens inside a VM
/// without working nested virtualisation hangs the guest before its first console line.
/// Not in the key: KVM and TCG run the same kernel to the same verdict.
pub fn accel(arch: Arch) -> &'static [&'static str] {
    let asked = std::env::var_os("KBUILD_TEST_KVM").is_some_and(|v| v == "1");
    let usable = asked
        && Arch::host() == Some(arch)
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
    if usable {
        &["-enable-kvm", "-cpu", "host"]
    } else {
        &[]
    }
}

/// The kernel as `qemu -kernel` takes it on a board whose loader wants a plain image: a gzipped
/// Image, or an EFI zboot image (`MZ`, `zimg`, its gzip payload's offset and size), unpacked.
pub fn plain_image(kernel: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let gunzip = |bytes: &[u8]| {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| format!("cannot gunzip the kernel image: {e}"))
    };
    if kernel.starts_with(&[0x1f, 0x8b]) {
        return gunzip(kernel);
    }
    if kernel.len() > 32 && &kernel[0..2] == b"MZ" && &kernel[4..8] == b"zimg" {
        let word = |at: usize| u32::from_le_bytes(kernel[at..at + 4].try_into().unwrap()) as usize;
        let (offset, size) = (word(8), word(12));
        let method = String::from_utf8_lossy(&kernel[24..32]);
        let method = method.trim_end_matches('\0');
        let payload = kernel
            .get(offset..offset.saturating_add(size))
            .ok_or("the EFI zboot header points outside the image")?;
        if method != "gzip" {
            return Err(format!(
                "the EFI zboot image is compressed with {method}; the boot test unpacks gzip only \
                 (set CONFIG_KERNEL_GZIP, or turn CONFIG_EFI_ZBOOT off)"
            ));
        }
        return gunzip(payload);
    }
    Ok(kernel.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_images_come_out_of_gzip_and_of_efi_zboot() {
        let image = b"RISCV image bytes".to_vec();
        assert_eq!(plain_image(&image).unwrap(), image);
        assert_eq!(plain_image(&gzip(&image)).unwrap(), image);
        let payload = gzip(&image);
        let mut zboot = vec![0u8; 64];
        zboot[0..2].copy_from_slice(b"MZ");
        zboot[4..8].copy_from_slice(b"zimg");
        zboot[8..12].copy_from_slice(&64u32.to_le_bytes());
        zboot[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        zboot[24..28].copy_from_slice(b"gzip");
        zboot.extend_from_slice(&payload);
        assert_eq!(plain_image(&zboot).unwrap(), image);
        zboot[24..28].copy_from_slice(b"zstd");
        assert!(plain_image(&zboot).unwrap_err().contains("zstd"));
        zboot[24..28].copy_from_slice(b"gzip");
        zboot[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(plain_image(&zboot).unwrap_err().contains("outside"));
    }
}
