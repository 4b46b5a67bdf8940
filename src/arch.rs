//! Target architectures and their many spellings (kernel, image, make and toolchain names).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kernel target architecture. Users may type any common spelling; labels print the image one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64];

    /// The kernel's and `uname -m`'s name, used in config file names.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The OCI/Go name, used in labels and tags.
    pub fn image_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The value of the kernel's `ARCH=` make variable.
    pub fn make_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
            Arch::Riscv64 => "riscv",
        }
    }

    /// The directory under `arch/` in the kernel tree.
    pub fn src_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
            Arch::Riscv64 => "riscv",
        }
    }

    /// The default GNU cross prefix, or none when building on a host of the same arch.
    pub fn default_cross_compile(self) -> &'static str {
        if Some(self) == Arch::host() {
            return "";
        }
        self.gnu_prefix()
    }

    /// The GNU toolchain prefix of this arch, as Debian's cross compilers name it.
    pub fn gnu_prefix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-",
            Arch::Aarch64 => "aarch64-linux-gnu-",
            Arch::Riscv64 => "riscv64-linux-gnu-",
        }
    }

    /// Where `make all` leaves the boot image, in order of preference: an EFI zboot image when
    /// the config makes one (CONFIG_EFI_ZBOOT), else the compressed image.
    pub fn boot_images(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["arch/x86/boot/bzImage"],
            Arch::Aarch64 => &["arch/arm64/boot/vmlinuz.efi", "arch/arm64/boot/Image.gz"],
            Arch::Riscv64 => &["arch/riscv/boot/vmlinuz.efi", "arch/riscv/boot/Image.gz"],
        }
    }

    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }

    /// Every accepted spelling, for suggestions.
    pub fn spellings() -> &'static [&'static str] {
        &["amd64", "x86_64", "arm64", "aarch64", "riscv64", "riscv"]
    }
}

impl FromStr for Arch {
    type Err = ();

    fn from_str(s: &str) -> Result<Arch, ()> {
        match s {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "riscv64" | "riscv" => Ok(Arch::Riscv64),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.image_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses() {
        for s in Arch::spellings() {
            assert!(s.parse::<Arch>().is_ok(), "{s}");
        }
        assert_eq!("x86_64".parse::<Arch>(), "amd64".parse::<Arch>());
        assert!("mips".parse::<Arch>().is_err());
    }
}
