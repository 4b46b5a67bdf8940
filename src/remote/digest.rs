//! Digests as the remote sees them: a hash under the server's digest function and a size.
//!
//! kbuild names everything by blake3. A server that offers BLAKE3 gets those names as they are;
//! one that offers only SHA-256 (BuildGrid, bazel-remote, Buildbarn, a WebDAV directory) gets
//! the SHA-256 of each blob, computed in the same pass that reads the blob for upload or writes
//! it after download, so no blob is read twice for it.

use std::io::{Read, Write};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use sha2::Digest as _;

/// The digest function both sides use for one run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Function {
    Sha256,
    Blake3,
}

impl Function {
    /// REAPI's `DigestFunction.Value`.
    pub fn code(self) -> i32 {
        match self {
            Function::Sha256 => re::digest_function::Value::Sha256 as i32,
            Function::Blake3 => re::digest_function::Value::Blake3 as i32,
        }
    }

    /// The segment ByteStream resource names carry: required for BLAKE3, left out for SHA-256.
    pub fn resource_segment(self) -> &'static str {
        match self {
            Function::Sha256 => "",
            Function::Blake3 => "blake3/",
        }
    }

    pub fn of_bytes(self, bytes: &[u8]) -> re::Digest {
        let mut h = Hasher::new(self);
        h.update(bytes);
        h.finish()
    }

    pub fn name(self) -> &'static str {
        match self {
            Function::Sha256 => "SHA-256",
            Function::Blake3 => "BLAKE3",
        }
    }
}

/// Hashes a stream under the remote's function, and under blake3 for the local cache too.
pub struct Hasher {
    function: Function,
    sha256: Option<sha2::Sha256>,
    blake3: blake3::Hasher,
    size: u64,
}

impl Hasher {
    pub fn new(function: Function) -> Hasher {
        Hasher {
            function,
            sha256: (function == Function::Sha256).then(sha2::Sha256::new),
            blake3: blake3::Hasher::new(),
            size: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(sha) = &mut self.sha256 {
            sha.update(bytes);
        }
        self.blake3.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The remote digest.
    pub fn finish(self) -> re::Digest {
        self.finish_both().0
    }

    /// The remote digest and the local (blake3) one.
    pub fn finish_both(self) -> (re::Digest, crate::digest::Digest) {
        let local = crate::digest::Digest::from_bytes(*self.blake3.finalize().as_bytes());
        let hash = match (self.function, self.sha256) {
            (Function::Sha256, Some(sha)) => hex::encode(sha.finalize()),
            _ => local.to_hex(),
        };
        let digest = re::Digest {
            hash,
            size_bytes: self.size as i64,
        };
        (digest, local)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(function: Function, inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Hasher::new(function),
        }
    }

    /// Flushes, and gives the remote and blake3 digests of everything written.
    pub fn finish(mut self) -> std::io::Result<(re::Digest, crate::digest::Digest)> {
        self.inner.flush()?;
        Ok(self.hasher.finish_both())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `from` into `to`, hashing on the way.
pub fn copy_hashing(
    function: Function,
    from: &mut dyn Read,
    to: &mut dyn Write,
) -> std::io::Result<(re::Digest, crate::digest::Digest)> {
    let mut h = Hasher::new(function);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(h.finish_both())
}

/// The remote digest of a local file, and its blake3.
pub fn of_file(
    function: Function,
    path: &std::path::Path,
) -> std::io::Result<(re::Digest, crate::digest::Digest)> {
    let mut file = std::fs::File::open(path)?;
    copy_hashing(function, &mut file, &mut std::io::sink())
}

/// `hash/size`, as both protocols name a blob.
pub fn show(d: &re::Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_functions_follow_their_standards() {
        // The SHA-256 of "abc" (FIPS 180-2), and blake3's own test vector for "".
        assert_eq!(
            Function::Sha256.of_bytes(b"abc").hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Function::Blake3.of_bytes(b"").hash,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(Function::Blake3.of_bytes(b"abc").size_bytes, 3);
        assert_eq!(Function::Blake3.code(), 9, "DigestFunction.BLAKE3");
        assert_eq!(Function::Sha256.code(), 1, "DigestFunction.SHA256");
        assert_eq!(Function::Blake3.resource_segment(), "blake3/");
    }
}
