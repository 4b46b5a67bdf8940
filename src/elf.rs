//! Enough of ELF (read with `object`) to tell whether a program needs a dynamic loader: a tool image holds the
//! tool's binary and nothing else, so a binary that names an interpreter cannot run there.

use std::fs::File;
use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind, ReadCache, ReadRef};

/// The interpreter (dynamic loader) `path` asks for, such as `/lib64/ld-linux-x86-64.so.2`;
/// `None` for a statically linked program and for anything that is not ELF (a script, say).
pub fn interpreter(path: &Path) -> std::io::Result<Option<String>> {
    // Read lazily: a static perf is tens of MB, of which only the headers matter here.
    let data = ReadCache::new(File::open(path)?);
    match FileKind::parse(&data) {
        Ok(FileKind::Elf32) => interpreter_in::<object::elf::FileHeader32<Endianness>, _>(&data),
        Ok(FileKind::Elf64) => interpreter_in::<object::elf::FileHeader64<Endianness>, _>(&data),
        _ => Ok(None),
    }
}

fn interpreter_in<'d, H, R>(data: R) -> std::io::Result<Option<String>>
where
    H: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let header = H::parse(data).map_err(|e| invalid(&e.to_string()))?;
    let endian = header.endian().map_err(|e| invalid(&e.to_string()))?;
    let headers = (header.program_headers(endian, data)).map_err(|e| invalid(&e.to_string()))?;
    for ph in headers {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            let name = ph
                .data(endian, data)
                .map_err(|()| invalid("the PT_INTERP segment lies outside the file"))?;
            let name = String::from_utf8_lossy(name);
            return Ok(Some(name.trim_end_matches('\0').to_string()));
        }
    }
    Ok(None)
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
        out[6] = 1; // EV_CURRENT
        out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        match interp {
            Some(name) => {
                out[ph..ph + 4].copy_from_slice(&object::elf::PT_INTERP.0.to_le_bytes());
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
