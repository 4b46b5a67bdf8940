//! Cosign-compatible signatures of pushed manifests, key-based (no keyless flow: it needs
//! online services). For a manifest `sha256:<hex>` in a repository, an image under the tag
//! `sha256-<hex>.sig` whose layers are "simple signing" payloads naming the repository and the
//! digest, each with its ECDSA P-256 signature (DER, base64) in the layer annotation
//! `dev.cosignproject.cosign/signature`: what `cosign verify --key` and containers/image's
//! `sigstoreSigned` policy read.
//!
//! P-256 signatures here are deterministic (RFC 6979): the same key over the same payload gives
//! the same bytes, so pushing again leaves the signature image as it is.

use std::collections::BTreeMap;
use std::path::Path;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde::{Deserialize, Serialize};

use super::{Descriptor, ImageConfig, MEDIA_CONFIG, Manifest};

pub const MEDIA_PAYLOAD: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The tag of the signatures of `digest`.
pub fn tag(digest: &str) -> String {
    format!("{}.sig", super::digest_tag(digest))
}

/// The simple-signing payload; field order is the byte order.
#[derive(Serialize, Deserialize, Debug)]
pub struct Payload {
    pub critical: Critical,
    pub optional: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload that says `repository` (`host/linuxkit/kernel`) holds `digest`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let payload = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_string(),
            },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            kind: PAYLOAD_TYPE.into(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).expect("payloads serialise")
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not {what} in PEM: {message}")]
    Format {
        path: String,
        what: &'static str,
        message: String,
    },
}

impl KeyError {
    pub fn help(&self) -> &'static str {
        match self {
            KeyError::Read { .. } => "check the path and its permissions",
            KeyError::Format { .. } => {
                "make one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cosign.key; openssl pkey -in cosign.key -pubout -out cosign.pub"
            }
        }
    }
}

fn read_pem(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A private signing key. Never printed: its Debug says only that it is a key.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(P-256 key)")
    }
}

impl Signer {
    /// An ECDSA P-256 private key, PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM, as
    /// openssl writes them. An encrypted cosign key is refused with what to do.
    pub fn from_file(path: &Path) -> Result<Signer, KeyError> {
        let pem = read_pem(path)?;
        let format = |message: String| KeyError::Format {
            path: path.display().to_string(),
            what: "an unencrypted ECDSA P-256 private key",
            message,
        };
        if pem.contains("ENCRYPTED") {
            return Err(format(
                "an encrypted key (cosign's own format) cannot be read: export it unencrypted"
                    .into(),
            ));
        }
        let key = match SigningKey::from_pkcs8_pem(&pem) {
            Ok(key) => key,
            Err(pkcs8) => p256::SecretKey::from_sec1_pem(&pem)
                .map(SigningKey::from)
                .map_err(|_| format(pkcs8.to_string()))?,
        };
        Ok(Signer { key })
    }

    /// The DER signature of `payload`, base64, as the annotation carries it.
    pub fn sign(&self, payload: &[u8]) -> String {
        use base64::Engine as _;
        let signature: Signature = self.key.sign(payload);
        let der: DerSignature = signature.to_der();
        base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
    }
}

/// A public key signatures are checked with.
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    /// An ECDSA P-256 public key, SPKI PEM (`PUBLIC KEY`), as `cosign.pub` and openssl have it.
    pub fn from_file(path: &Path) -> Result<Verifier, KeyError> {
        let pem = read_pem(path)?;
        let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| KeyError::Format {
            path: path.display().to_string(),
            what: "an ECDSA P-256 public key",
            message: e.to_string(),
        })?;
        Ok(Verifier { key })
    }

    /// Whether `signature` (base64 DER) signs `payload` with this key.
    pub fn verify(&self, payload: &[u8], signature: &str) -> bool {
        use base64::Engine as _;
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = Signature::from_der(&der) else {
            return false;
        };
        self.key.verify(payload, &signature).is_ok()
    }
}

/// The layer of one signature: the payload's descriptor with the signature annotation.
pub fn layer(payload: &[u8], signature: &str) -> Descriptor {
    let mut descriptor = Descriptor::of(MEDIA_PAYLOAD, payload);
    descriptor
        .annotations
        .insert(ANNOTATION.into(), signature.into());
    descriptor
}

/// The signature image over `layers`: its config bytes and manifest bytes.
pub fn image(layers: Vec<Descriptor>) -> (Vec<u8>, Vec<u8>) {
    let config = ImageConfig::of_artifact("", &layers);
    let manifest = Manifest::over(Descriptor::of(MEDIA_CONFIG, &config), layers);
    (
        config,
        serde_json::to_vec(&manifest).expect("manifests serialise"),
    )
}

/// An image reference: `HOST[:PORT]/REPO` with `:TAG` or `@sha256:…`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub host: String,
    pub repository: String,
    /// The tag or the digest.
    pub reference: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, String> {
        let bad = || {
            format!(
                "`{text}` is no image reference: write HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:HEX"
            )
        };
        let (host, rest) = text.split_once('/').ok_or_else(bad)?;
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) if super::registry::is_sha256_digest(digest) => (repo, digest),
            Some(_) => return Err(bad()),
            None => rest.rsplit_once(':').ok_or_else(bad)?,
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        };
        if !valid(host) || !valid(repository) || !valid(reference) || repository.contains(':') {
            return Err(bad());
        }
        Ok(Reference {
            host: host.into(),
            repository: repository.into(),
            reference: reference.into(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.host, self.repository, self.reference
        )
    }
}

/// What checking the signatures of one reference found.
#[derive(Debug)]
pub enum Checked {
    /// A signature by the key over this digest, naming this repository.
    Signed { digest: String },
    /// None: why each signature there (if any) was not one.
    Unsigned {
        digest: String,
        reasons: Vec<String>,
    },
}

/// Checks that `reference` is signed by `verifier`'s key. Everything the registry says is
/// checked, never believed: the manifest's digest is computed from its bytes, each payload
/// against its layer's digest, and the payload must name this digest and this repository.
pub fn check(
    registry: &super::registry::Registry,
    reference: &Reference,
    verifier: &Verifier,
) -> Result<Checked, String> {
    let repo = &reference.repository;
    let bytes = (registry.get_manifest(repo, &reference.reference))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("`{reference}` is not in the registry"))?;
    let digest = super::sha256_digest(&bytes);
    if reference.reference.starts_with("sha256:") && reference.reference != digest {
        return Err(format!(
            "the registry served `{reference}` with other bytes ({digest})"
        ));
    }
    let tag = tag(&digest);
    let unsigned = |reasons: Vec<String>| {
        Ok(Checked::Unsigned {
            digest: digest.clone(),
            reasons,
        })
    };
    let Some(signatures) = registry
        .get_manifest(repo, &tag)
        .map_err(|e| e.to_string())?
    else {
        return unsigned(vec![format!("there is no signature image `{repo}:{tag}`")]);
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&signatures) else {
        return unsigned(vec![format!("`{repo}:{tag}` is not an image manifest")]);
    };
    let identity = format!("{}/{repo}", reference.host);
    let mut reasons = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        match check_layer(registry, repo, layer, (&identity, &digest), verifier) {
            Ok(()) => return Ok(Checked::Signed { digest }),
            Err(reason) => reasons.push(format!("signature {}: {reason}", n + 1)),
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("`{repo}:{tag}` holds no signature"));
    }
    unsigned(reasons)
}

fn check_layer(
    registry: &super::registry::Registry,
    repo: &str,
    layer: &Descriptor,
    (identity, digest): (&str, &str),
    verifier: &Verifier,
) -> Result<(), String> {
    let signature = (layer.annotations.get(ANNOTATION)).ok_or("it has no signature annotation")?;
    let payload = (registry.get_blob(repo, &layer.digest))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("its payload {} is not in the registry", layer.digest))?;
    if super::sha256_digest(&payload) != layer.digest {
        return Err("its payload does not match its digest".into());
    }
    let parsed: Payload =
        serde_json::from_slice(&payload).map_err(|e| format!("its payload is unreadable: {e}"))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(format!("its payload is a `{}`", parsed.critical.kind));
    }
    if parsed.critical.image.docker_manifest_digest != digest {
        return Err(format!(
            "it signs {}, not this manifest",
            parsed.critical.image.docker_manifest_digest
        ));
    }
    if parsed.critical.identity.docker_reference != identity {
        return Err(format!(
            "it names `{}`, not `{identity}`",
            parsed.critical.identity.docker_reference
        ));
    }
    if !verifier.verify(&payload, signature) {
        return Err("it is not a signature by this key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair(dir: &Path) -> (Signer, Verifier) {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let secret = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let private = dir.join("k.key");
        let public = dir.join("k.pub");
        std::fs::write(
            &private,
            secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        let pem = secret
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(&public, pem).unwrap();
        (
            Signer::from_file(&private).unwrap(),
            Verifier::from_file(&public).unwrap(),
        )
    }

    #[test]
    fn a_signature_verifies_with_its_key_only_over_its_payload_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, verifier) = key_pair(dir.path());
        let payload = payload("127.0.0.1:5000/linuxkit/kernel", "sha256:abc");
        let signature = signer.sign(&payload);
        assert!(verifier.verify(&payload, &signature));
        assert_eq!(signer.sign(&payload), signature, "RFC 6979");
        let other = super::payload("127.0.0.1:5000/linuxkit/kernel", "sha256:abd");
        assert!(!verifier.verify(&other, &signature));
        assert!(!verifier.verify(&payload, "not base64!"));
        assert_eq!(tag("sha256:abc"), "sha256-abc.sig");
        assert!(format!("{signer:?}").contains("P-256"));
    }

    #[test]
    fn a_key_that_is_not_one_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n").unwrap();
        let e = Signer::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
        assert!(e.help().contains("openssl genpkey"));
    }

    #[test]
    fn references_parse_with_a_tag_or_a_digest() {
        let r = Reference::parse("127.0.0.1:5000/linuxkit/kernel:6.6.71-amd64").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repository, "linuxkit/kernel");
        assert_eq!(r.reference, "6.6.71-amd64");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("reg.example/k@{digest}")).unwrap();
        assert_eq!(r.reference, digest);
        assert_eq!(r.to_string(), format!("reg.example/k@{digest}"));
        for bad in [
            "kernel:6.6",
            "host/k",
            "host/k@sha256:12",
            "host/k:t a",
            "host/:t",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
