//! Initramfs archives: the "newc" cpio format the kernel unpacks, written deterministically
//! (entries in the order given, inode numbers counted from 1, owner 0:0, one fixed mtime), so
//! that the same files make the same bytes on every machine.

use std::io::Write;

/// One member of an archive.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    /// A character device node, such as `/dev/console` (5, 1).
    CharDevice {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::CharDevice { path, .. } => {
                path
            }
        }
    }
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Writes `entries` and the trailer as a newc archive with every mtime `mtime`.
pub fn write(out: &mut impl Write, entries: &[Entry], mtime: u32) -> std::io::Result<()> {
    let mut written = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
            Entry::Dir { mode, .. } => (S_IFDIR | mode, &[], (0, 0)),
            Entry::File { mode, data, .. } => (S_IFREG | mode, data, (0, 0)),
            Entry::CharDevice {
                mode, major, minor, ..
            } => (S_IFCHR | mode, &[], (*major, *minor)),
        };
        let path = entry.path().trim_start_matches('/');
        let header = Header {
            ino: i as u32 + 1,
            mode,
            nlink: if matches!(entry, Entry::Dir { .. }) {
                2
            } else {
                1
            },
            mtime,
            size: u32::try_from(data.len()).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a member over 4 GiB")
            })?,
            rdev,
        };
        written += header.write(out, path)?;
        out.write_all(data)?;
        written += data.len();
        written += pad(out, written)?;
    }
    let trailer = Header {
        ino: 0,
        mode: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdev: (0, 0),
    };
    written += trailer.write(out, "TRAILER!!!")?;
    pad(out, written)?;
    Ok(())
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

impl Header {
    /// The 110-byte header, the name and its NUL, padded to four bytes; returns the length.
    fn write(&self, out: &mut impl Write, name: &str) -> std::io::Result<usize> {
        let fields = [
            self.ino,
            self.mode,
            0, // uid
            0, // gid
            self.nlink,
            self.mtime,
            self.size,
            0, // devmajor
            0, // devminor
            self.rdev.0,
            self.rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        out.write_all(header.as_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&[0])?;
        let len = header.len() + name.len() + 1;
        Ok(len + pad(out, len)?)
    }
}

/// Zero bytes up to the next multiple of four; returns how many.
fn pad(out: &mut impl Write, len: usize) -> std::io::Result<usize> {
    let n = (4 - len % 4) % 4;
    out.write_all(&[0; 3][..n])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let entries = [
            Entry::Dir {
                path: "dev".into(),
                mode: 0o755,
            },
            Entry::CharDevice {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "/init".into(),
                mode: 0o755,
                data: b"#!/bin/sh\n".to_vec(),
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &entries, 7).unwrap();
        out
    }

    #[test]
    fn the_same_entries_make_the_same_bytes_aligned_to_four() {
        let a = archive();
        assert_eq!(a, archive());
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("dev/console\0"));
        // The leading slash is dropped: the kernel unpacks relative to its root.
        assert!(text.contains("init\0"));
        assert!(!text.contains("/init"));
    }

    /// GNU cpio, an independent reader, lists what was written, with the device node's numbers.
    #[test]
    fn gnu_cpio_reads_it() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: no cpio on PATH");
            return;
        };
        child.stdin.take().unwrap().write_all(&archive()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
        assert!(lines[1].starts_with("crw-------") && lines[1].contains("5,"));
        assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with(" init"));
    }
}
