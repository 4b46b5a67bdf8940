//! Just enough of ELF to tell whether a program needs a dynamic loader: a tool image holds the
//! tool's binary and nothing else, so a binary that names an interpreter cannot run there.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const PT_INTERP: u32 = 3;

/// Where the fields we read sit in the two classes of ELF.
struct Layout {
    wide: bool,
    big_endian: bool,
}

impl Layout {
    /// The unsigned field of `width` bytes (2, 4 or 8) at `at`, in the file's byte order.
    fn uint(&self, bytes: &[u8], at: usize, width: usize) -> Option<u64> {
        let field = bytes.get(at..at + width)?;
        let mut value = [0u8; 8];
        if self.big_endian {
            value[8 - width..].copy_from_slice(field);
            Some(u64::from_be_bytes(value))
        } else {
            value[..width].copy_from_slice(field);
            Some(u64::from_le_bytes(value))
        }
    }

    fn u16(&self, bytes: &[u8], at: usize) -> Option<u64> {
        self.uint(bytes, at, 2)
    }

    fn u32(&self, bytes: &[u8], at: usize) -> Option<u64> {
        self.uint(bytes, at, 4)
    }

    /// An address-sized field: 8 bytes in ELF64, 4 in ELF32.
    fn addr(&self, bytes: &[u8], at: usize) -> Option<u64> {
        self.uint(bytes, at, if self.wide { 8 } else { 4 })
    }
}

/// The interpreter (dynamic loader) `path` asks for, such as `/lib64/ld-linux-x86-64.so.2`;
/// `None` for a statically linked program and for anything that is not ELF (a script, say).
pub fn interpreter(path: &Path) -> std::io::Result<Option<String>> {
    let file = File::open(path)?;
    let mut header = [0u8; 64];
    let read = read_at_most(&file, &mut header, 0)?;
    let header = &header[..read];
    if read < 52 || header[..4] != *b"\x7fELF" {
        return Ok(None);
    }
    let elf = Layout {
        wide: header[4] == 2,
        big_endian: header[5] == 2,
    };
    let malformed = || std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated ELF header");
    // e_phoff, e_phentsize and e_phnum: after e_entry, whose width depends on the class.
    let (phoff, phentsize, phnum) = if elf.wide {
        (
            elf.addr(header, 0x20),
            elf.u16(header, 0x36),
            elf.u16(header, 0x38),
        )
    } else {
        (
            elf.addr(header, 0x1c),
            elf.u16(header, 0x2a),
            elf.u16(header, 0x2c),
        )
    };
    let (phoff, phentsize, phnum) = (
        phoff.ok_or_else(malformed)?,
        phentsize.ok_or_else(malformed)?,
        phnum.ok_or_else(malformed)?,
    );
    let mut entry = vec![0u8; phentsize as usize];
    for index in 0..phnum {
        file.read_exact_at(&mut entry, phoff + index * phentsize)?;
        if elf.u32(&entry, 0) != Some(u64::from(PT_INTERP)) {
            continue;
        }
        // p_offset and p_filesz: ELF64 puts p_flags before them, ELF32 after.
        let (offset, size) = if elf.wide {
            (elf.addr(&entry, 0x08), elf.addr(&entry, 0x20))
        } else {
            (elf.addr(&entry, 0x04), elf.addr(&entry, 0x10))
        };
        let (offset, size) = (offset.ok_or_else(malformed)?, size.ok_or_else(malformed)?);
        let mut name = vec![0u8; size.min(4096) as usize];
        file.read_exact_at(&mut name, offset)?;
        let name = String::from_utf8_lossy(&name);
        return Ok(Some(name.trim_end_matches('\0').to_string()));
    }
    Ok(None)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian executable with one program header, `PT_INTERP` naming
    /// `interp` if given, else `PT_LOAD`.
    fn elf64(interp: Option<&str>) -> Vec<u8> {
        let mut out = vec![0u8; 64 + 56];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little endian
        out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        match interp {
            Some(name) => {
                out[ph..ph + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
                let offset = out.len() as u64;
                let bytes = format!("{name}\0");
                out[ph + 0x08..ph + 0x10].copy_from_slice(&offset.to_le_bytes());
                out[ph + 0x20..ph + 0x28].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes.as_bytes());
            }
            None => out[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()),
        }
        out
    }

    fn interpreter_of(bytes: &[u8]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program");
        std::fs::write(&path, bytes).unwrap();
        interpreter(&path).unwrap()
    }

    #[test]
    fn a_static_program_names_no_interpreter() {
        assert_eq!(interpreter_of(&elf64(None)), None);
    }

    #[test]
    fn a_dynamic_program_names_its_loader() {
        assert_eq!(
            interpreter_of(&elf64(Some("/lib/ld-musl-aarch64.so.1"))).as_deref(),
            Some("/lib/ld-musl-aarch64.so.1")
        );
    }

    #[test]
    fn scripts_and_short_files_are_not_elf() {
        assert_eq!(interpreter_of(b"#!/bin/sh\necho perf\n"), None);
        assert_eq!(interpreter_of(b"\x7fELF"), None);
    }

    #[test]
    fn the_hosts_own_shell_is_dynamic() {
        // Debian's /bin/sh (dash) is dynamically linked on every arch it ships for.
        let loader = interpreter(Path::new("/bin/sh")).unwrap().expect("dynamic");
        assert!(loader.contains("ld-"), "{loader}");
    }
}
