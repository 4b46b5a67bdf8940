//! `kbuild builder`: which image and daemon build each arch, and making a builder image.

use std::collections::BTreeSet;

use super::Workspace;
use crate::arch::Arch;
use crate::exec::docker::{builder, endpoint};

/// One line per series and arch: image, endpoint, native or cross, and the image's ID there.
pub fn show(ws: &Workspace) -> miette::Result<i32> {
    let model = ws.model()?;
    let docker = ws.docker()?;
    let mut missing = 0;
    println!("series\tarch\tbuilder\tendpoint\tbuild\timage");
    for series in &model.series {
        for &arch in &series.arches {
            let image = series.builder_for(Some(arch));
            let endpoint = docker.endpoints().for_arch(Some(arch));
            let how = if endpoint != endpoint::LOCAL || Some(arch) == Arch::host() {
                "native"
            } else {
                "cross"
            };
            let id = match docker.image_id(endpoint, image) {
                Ok(id) => id,
                Err(e) => {
                    missing += 1;
                    format!("unavailable: {e}")
                }
            };
            println!(
                "{}\t{}\t{image}\t{}\t{how}\t{id}",
                series.name,
                arch.kernel_name(),
                endpoint::describe(endpoint)
            );
        }
    }
    if missing > 0 {
        eprintln!(
            "kbuild: {missing} builder image(s) unavailable; `kbuild builder create` makes one"
        );
    }
    Ok(i32::from(missing > 0))
}

/// Debootstraps a builder root and imports it as every tag asked for (default: every builder
/// image the manifest names).
pub fn create(
    ws: &Workspace,
    tags: &[String],
    suite: &str,
    mirror: &str,
    extra: &[String],
) -> miette::Result<i32> {
    let model = ws.model()?;
    let tags: Vec<String> = if tags.is_empty() {
        let named: BTreeSet<String> = model
            .series
            .iter()
            .flat_map(|s| {
                std::iter::once(s.builder.clone()).chain(s.arch_builders.values().cloned())
            })
            .collect();
        named.into_iter().collect()
    } else {
        tags.to_vec()
    };
    if tags.is_empty() {
        return Err(miette::miette!(
            help = "pass --tag, or declare `builder` in kernel.kdl",
            "no builder image to create"
        ));
    }
    let docker = ws.docker()?;
    let mut packages = builder::packages(Arch::host());
    packages.extend(extra.iter().cloned());
    let work = tempfile::tempdir().map_err(|e| miette::miette!("a temporary directory: {e}"))?;
    let root = work.path().join("root");
    eprintln!(
        "kbuild: debootstrap {suite} from {mirror} with {}",
        packages.join(" ")
    );
    let fail = |e: crate::exec::ExecError| {
        let hint = e.hint().unwrap_or_default().to_string();
        miette::miette!(help = hint, "{e}")
    };
    builder::bootstrap(&root, suite, mirror, &packages).map_err(fail)?;
    let id = builder::import(&docker, &root, &tags).map_err(fail)?;
    for tag in &tags {
        println!("{tag}\t{id}");
    }
    Ok(0)
}
