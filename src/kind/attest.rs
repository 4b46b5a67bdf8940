//! Attest: a kernel image's attestation manifest (its SBOM and SLSA provenance as in-toto
//! statements), which the index carries beside the image, as BuildKit stores attestations.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "attest",
    code: &["recipe/attest.rs", "provenance.rs", "oci/attestation.rs"],
    // The provenance names the build environment: the compile's toolchain identity.
    toolchain: true,
    // The index and the layout read it.
    held: true,
    checked_for_out: true,
    // The tag hash names the image's inputs in the provenance.
    tagged: true,
    describes: true,
    ..PLAIN
};
