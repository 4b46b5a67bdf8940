//! `kbuild sbom LABEL` and `kbuild attestations LABEL`: build one target (a kernel or a tool)
//! and print what its image carries: the SPDX document, or its attestations and referrers.

use super::{Workspace, views};
use crate::cache::Cache;
use crate::engine::Status;
use crate::key::ActionKey;
use crate::kind::ActionKind;
use crate::oci::Descriptor;

/// Builds the one target `label` names; gives the cache and the key of its action of
/// `kind`, or the run's exit code when the build did not make it.
fn build_one(
    ws: &Workspace,
    label: &str,
    (jobs, views): (usize, &views::Views),
    kind: ActionKind,
) -> miette::Result<Result<(Cache, ActionKey), i32>> {
    let labels = [label.to_string()];
    // One image, checked before anything is built.
    let targets = crate::label::resolve(ws.model()?, &labels)?;
    if targets.len() != 1 {
        miette::bail!(
            help = "name one target, e.g. //6.1.x:amd64 or //6.1.x:perf-arm64",
            "`{label}` names {} images",
            targets.len()
        );
    }
    let cache = super::open_cache(ws)?;
    let what = (&labels[..], crate::plan::Goal::Build);
    let found = super::build_then(
        ws,
        &cache,
        what,
        (jobs, false, false),
        (false, views),
        |request, built| {
            super::render::run(&built, request.remote.as_deref(), super::Format::Text);
            let ids: Vec<_> = (built.graph.ids())
                .filter(|&id| built.graph.action(id).kind() == kind)
                .collect();
            let [id] = ids.as_slice() else {
                unreachable!("one target lowers one {kind}");
            };
            Ok(match &built.report.status[id.index()] {
                Status::Cached { key, .. }
                | Status::Executed { key, .. }
                | Status::Remote { key, .. } => Ok(*key),
                _ => Err(built.exit_code(&request.cancel).max(1)),
            })
        },
    )?;
    Ok(found.map(|key| (cache, key)))
}

pub(crate) fn command(
    ws: &Workspace,
    label: &str,
    jobs: usize,
    views: &views::Views,
) -> miette::Result<i32> {
    let (cache, key) = match build_one(ws, label, (jobs, views), ActionKind::Sbom)? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let text = (cache.read_output(key, crate::recipe::SBOM_FILE))
        .map_err(|e| miette::miette!("the SBOM of {label}: {e}"))?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&text);
    Ok(0)
}

/// What the image of `label` carries: its attestation manifest in the index, with each
/// statement, and the same statements as OCI 1.1 referrers.
pub(crate) fn attestations(
    ws: &Workspace,
    label: &str,
    jobs: usize,
    views: &views::Views,
) -> miette::Result<i32> {
    let (cache, key) = match build_one(ws, label, (jobs, views), ActionKind::Attest)? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let read = |file: &str| {
        let bytes = (cache.read_output(key, file))
            .map_err(|e| miette::miette!("the attestations of {label}: {e}"))?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| miette::miette!("the attestations of {label}: {file}: {e}"))
    };
    let parse = |value: serde_json::Value| {
        serde_json::from_value::<Descriptor>(value).map_err(|e| miette::miette!("{e}"))
    };
    let attestation = parse(read("descriptor.json")?)?;
    let manifest = read(&format!("blobs/sha256/{}", attestation.hex()))?;
    let subject = crate::oci::attestation::subject_of(&attestation).unwrap_or("?");
    println!("{label}: image {subject}");
    println!(
        "  attestation manifest {} (in the index, platform unknown/unknown)",
        attestation.digest
    );
    let predicate = |d: &Descriptor| {
        let key = crate::oci::attestation::PREDICATE_TYPE;
        d.annotations.get(key).cloned().unwrap_or_default()
    };
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let layer = parse(layer.clone())?;
        let (what, size) = (predicate(&layer), layer.size);
        println!("    {what:32} {} {size} bytes", layer.digest);
    }
    println!("  OCI 1.1 referrers of {subject}:");
    let referrers = read(crate::oci::attestation::REFERRERS_FILE)?;
    for referrer in referrers.as_array().into_iter().flatten() {
        let referrer = parse(referrer.clone())?;
        println!("    {:32} {}", predicate(&referrer), referrer.digest);
    }
    Ok(0)
}
