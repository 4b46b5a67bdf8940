//! Typed content digests: blake3 for everything kbuild stores, sha256 for what upstream publishes.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A blake3 digest of some bytes: a blob, an output manifest or a key record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn of_file(path: &Path) -> std::io::Result<Digest> {
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        // Memory-mapping pays off only for large files; small ones are read directly.
        if len > 1 << 20 {
            hasher.update_mmap(path)?;
        } else {
            let mut buf = Vec::with_capacity(len as usize);
            (&file).read_to_end(&mut buf)?;
            hasher.update(&buf);
        }
        Ok(Digest(*hasher.finalize().as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn to_hex(self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Reads 64 hex digits in either case.
    pub fn from_hex(text: &str) -> Option<Digest> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Digest(bytes))
    }

    /// The first characters of the hex form, for display.
    pub fn short(self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// Hex in text formats (JSON), the 32 bytes in binary ones (the kept graph).
impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(blake3::Hash::from_bytes(self.0).to_hex().as_str())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        if !d.is_human_readable() {
            return <[u8; 32]>::deserialize(d).map(Digest);
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::from_hex(&text).ok_or_else(|| serde::de::Error::custom("invalid blake3 digest"))
    }
}

/// A sha256 as published for kernel tarballs, kept as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Sha256(String);

impl Sha256 {
    /// Accepts 64 hex digits in either case; returns `None` for anything else.
    pub fn parse(text: &str) -> Option<Sha256> {
        let ok = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Sha256(text.to_ascii_lowercase()))
    }

    pub fn of_file(path: &Path) -> std::io::Result<Sha256> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        let mut file = std::fs::File::open(path)?;
        std::io::copy(&mut file, &mut hasher)?;
        Ok(Sha256::finish(hasher))
    }

    pub fn of_bytes(bytes: &[u8]) -> Sha256 {
        use sha2::Digest as _;
        Sha256::finish(sha2::Sha256::new_with_prefix(bytes))
    }

    pub fn finish(hasher: sha2::Sha256) -> Sha256 {
        use sha2::Digest as _;
        Sha256(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest::of_bytes(b"kbuild");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(d.short().len(), 12);
    }

    #[test]
    fn sha256_rejects_bad_text() {
        assert!(Sha256::parse("abc").is_none());
        assert!(Sha256::parse(&"g".repeat(64)).is_none());
        assert_eq!(
            Sha256::parse(&"A".repeat(64)).unwrap().as_str(),
            "a".repeat(64)
        );
    }
}
