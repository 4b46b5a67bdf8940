//! `kbuild sign` and `kbuild verify-signature`: cosign-compatible signatures of images already
//! in a registry (`kbuild push --sign-key` signs what it pushes). Neither needs a workspace.

use std::path::Path;

use crate::oci::signature::{self, Checked, Reference, Signer, Verifier};

fn key_error(e: signature::KeyError) -> miette::Report {
    miette::miette!(help = e.help(), "{e}")
}

fn reference(text: &str) -> miette::Result<Reference> {
    Reference::parse(text).map_err(|e| {
        miette::miette!(
            help = "e.g. 127.0.0.1:5000/linuxkit/kernel:6.6.71-amd64",
            "{e}"
        )
    })
}

/// The private key `--sign-key` or `KBUILD_SIGN_KEY` names, read once.
pub fn signer(path: Option<&Path>) -> miette::Result<Option<Signer>> {
    path.map(|p| Signer::from_file(p).map_err(key_error))
        .transpose()
}

/// Signs each reference's manifest (not what an index lists: sign those by their own
/// references, as `kbuild push --sign-key` does for everything it pushes).
pub fn sign(key: &Path, references: &[String], insecure: bool) -> miette::Result<i32> {
    let signer = Signer::from_file(key).map_err(key_error)?;
    for text in references {
        let r = reference(text)?;
        let registry = crate::oci::registry::Registry::new(&r.host, insecure)?;
        let bytes = (registry.get_manifest(&r.repository, &r.reference)?)
            .ok_or_else(|| miette::miette!("`{r}` is not in the registry"))?;
        let digest = crate::oci::sha256_digest(&bytes);
        let mut pusher = crate::oci::push::Pusher::new(&registry, false).signing(Some(&signer));
        pusher.sign(&r.repository, &digest)?;
        let state = if pusher.report.signed > 0 {
            "signed"
        } else {
            "already signed"
        };
        println!("{state}: {}/{}@{digest}", r.host, r.repository);
    }
    Ok(0)
}

/// Exit 0 when the reference is signed by the key, 1 when it is not (with why).
pub fn verify(key: &Path, text: &str, insecure: bool) -> miette::Result<i32> {
    let verifier = Verifier::from_file(key).map_err(key_error)?;
    let r = reference(text)?;
    let registry = crate::oci::registry::Registry::new(&r.host, insecure)?;
    match signature::check(&registry, &r, &verifier).map_err(|e| miette::miette!("{e}"))? {
        Checked::Signed { digest } => {
            println!(
                "verified: {}/{}@{digest} ({text}) is signed by {}",
                r.host,
                r.repository,
                key.display()
            );
            Ok(0)
        }
        Checked::Unsigned { digest, reasons } => {
            eprintln!(
                "kbuild: {}/{}@{digest} ({text}) is not signed by {}",
                r.host,
                r.repository,
                key.display()
            );
            for reason in reasons {
                eprintln!("  {reason}");
            }
            Ok(1)
        }
    }
}
