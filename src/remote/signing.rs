//! Signed results. Content addressing proves that the files of a result are the ones its
//! manifest names, never that the result belongs to the action it is filed under: a server (or
//! anyone who can write to it) can file another action's well-formed result under any key, and
//! an arm64 kernel then lands in `out/…/amd64`. Only the writer can vouch for that, so a trusted
//! writer (the default branch's CI) signs what it uploads, and a reader that trusts its public
//! key takes nothing else.
//!
//! The signature is ed25519 over the digest function, the action digest (which is the kbuild
//! key), and the digests of kbuild's manifest and output tree; it travels inside the
//! `ActionResult` as an entry of `execution_metadata.auxiliary_metadata`, which both protocols
//! store as it is, so ordinary REAPI tools still read the cache. Keys are PEM files as
//! `openssl genpkey -algorithm ed25519` writes them (PKCS#8, and SPKI for the public key).

use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

use super::digest::Function;

/// The `Any` type of the signature entry.
pub const TYPE_URL: &str = "type.kbuild.dev/kbuild.remote.v1.ResultSignature";

/// The largest signature entry a reader decodes.
const MAX_ENTRY: usize = 4096;

/// A key that signs uploads.
pub struct Signer {
    key: SigningKey,
}

/// The public keys whose signatures a reader accepts.
pub struct Trust {
    keys: Vec<VerifyingKey>,
}

/// What a result is signed over.
pub struct Signed<'a> {
    pub function: Function,
    pub action: &'a re::Digest,
    pub manifest: &'a re::Digest,
    pub tree: Option<&'a re::Digest>,
}

impl Signed<'_> {
    fn message(&self) -> Vec<u8> {
        let show = |d: &re::Digest| format!("{}/{}", d.hash, d.size_bytes);
        format!(
            "kbuild remote result v1\n{}\n{}\n{}\n{}\n",
            self.function.name(),
            show(self.action),
            show(self.manifest),
            self.tree.map_or_else(|| "-".to_string(), show)
        )
        .into_bytes()
    }
}

/// A short, printable name of a public key: its first 8 bytes in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(&key.as_bytes()[..8]))
}

/// Reads a key file; the error names the file and what is wrong, never its content.
fn read_pem(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} `{}`: {e}", path.display()))
}

impl Signer {
    pub fn load(path: &Path) -> Result<Signer, String> {
        let text = read_pem(path, "signing key")?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|_| {
            format!(
                "`{}` is no ed25519 private key in PKCS#8 PEM (make one with \
                 `openssl genpkey -algorithm ed25519 -out FILE`)",
                path.display()
            )
        })?;
        Ok(Signer { key })
    }

    pub fn id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// Adds the signature of `signed` to `result`.
    pub fn sign(&self, signed: &Signed<'_>, result: &mut re::ActionResult) {
        let signature = self.key.sign(&signed.message());
        let mut value = Vec::with_capacity(96);
        value.extend_from_slice(self.key.verifying_key().as_bytes());
        value.extend_from_slice(&signature.to_bytes());
        let metadata = result
            .execution_metadata
            .get_or_insert_with(Default::default);
        metadata
            .auxiliary_metadata
            .retain(|entry| entry.type_url != TYPE_URL);
        metadata
            .auxiliary_metadata
            .push(bazel_remote_apis::google::protobuf::Any {
                type_url: TYPE_URL.into(),
                value,
            });
    }
}

impl Trust {
    /// One or more public keys, each in its own SPKI PEM block, in one file.
    pub fn load(path: &Path) -> Result<Trust, String> {
        let text = read_pem(path, "trusted key file")?;
        let mut keys = Vec::new();
        for block in text.split_inclusive("-----END PUBLIC KEY-----") {
            let Some(start) = block.find("-----BEGIN PUBLIC KEY-----") else {
                continue;
            };
            let key = VerifyingKey::from_public_key_pem(&block[start..]).map_err(|_| {
                format!(
                    "`{}` holds a public key that is not ed25519 in SPKI PEM (make it with \
                     `openssl pkey -in KEY -pubout`)",
                    path.display()
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(format!(
                "`{}` holds no PEM public key (make one with `openssl pkey -in KEY -pubout`)",
                path.display()
            ));
        }
        Ok(Trust { keys })
    }

    /// The trusted key that signed `result` over `signed`, if one did.
    pub fn signer(&self, signed: &Signed<'_>, result: &re::ActionResult) -> Option<String> {
        let entries = result
            .execution_metadata
            .as_ref()?
            .auxiliary_metadata
            .iter();
        let message = signed.message();
        for entry in entries.filter(|e| e.type_url == TYPE_URL && e.value.len() <= MAX_ENTRY) {
            let Some((key, signature)) = entry.value.split_at_checked(32) else {
                continue;
            };
            let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                continue;
            };
            let trusted = self.keys.iter().find(|k| k.as_bytes() == key);
            if let Some(key) = trusted
                && key.verify(&message, &signature).is_ok()
            {
                return Some(key_id(key));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Signer, Trust, Trust) {
        let signer = Signer {
            key: SigningKey::from_bytes(&[7; 32]),
        };
        let trust = Trust {
            keys: vec![signer.key.verifying_key()],
        };
        let other = Trust {
            keys: vec![SigningKey::from_bytes(&[8; 32]).verifying_key()],
        };
        (signer, trust, other)
    }

    #[test]
    fn a_signature_binds_the_action_and_the_outputs() {
        let (signer, trust, other) = keys();
        let f = Function::Sha256;
        let (a, b) = (f.of_bytes(b"amd64"), f.of_bytes(b"arm64"));
        let (m, t) = (f.of_bytes(b"manifest"), f.of_bytes(b"tree"));
        let signed = Signed {
            function: f,
            action: &a,
            manifest: &m,
            tree: Some(&t),
        };
        let mut result = re::ActionResult::default();
        signer.sign(&signed, &mut result);
        assert_eq!(trust.signer(&signed, &result), Some(signer.id()));
        assert_eq!(other.signer(&signed, &result), None, "an untrusted key");
        // The same result filed under another action, or with other outputs, is refused.
        let moved = Signed {
            action: &b,
            ..signed
        };
        assert_eq!(trust.signer(&moved, &result), None);
        let swapped = Signed {
            function: f,
            action: &a,
            manifest: &t,
            tree: Some(&m),
        };
        assert_eq!(trust.signer(&swapped, &result), None);
        assert_eq!(trust.signer(&swapped, &re::ActionResult::default()), None);
    }
}
