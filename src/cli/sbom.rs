//! `kbuild sbom LABEL`: builds one kernel target and its SBOM, and prints the SPDX document.

use super::{Workspace, views};
use crate::engine::Status;
use crate::kind::ActionKind;

pub(crate) fn command(
    ws: &Workspace,
    label: &str,
    jobs: usize,
    views: &views::Views,
) -> miette::Result<i32> {
    let labels = [label.to_string()];
    // One kernel image, checked before anything is built.
    let targets = crate::label::resolve(ws.model()?, &labels)?;
    let kernels = (targets.iter())
        .filter(|t| matches!(t.kind, crate::label::TargetKind::Kernel(_)))
        .count();
    if kernels != 1 || targets.len() != 1 {
        miette::bail!(
            help = "name one kernel target, e.g. //6.1.x:amd64 (tools have no SBOM yet)",
            "`{label}` names {kernels} kernel images"
        );
    }
    let cache = super::open_cache(ws)?;
    let exec = ws.executor()?;
    let report = views.reporter(false)?;
    let request = ws.request(
        &cache,
        exec.as_ref(),
        (&labels, crate::plan::Goal::Build),
        (jobs, false, false),
        report,
    )?;
    request.cancel.install_handler();
    let built = crate::build::build(&request)?;
    super::render::run(&built, request.remote.as_deref(), super::Format::Text);
    let sboms: Vec<_> = (built.graph.ids())
        .filter(|&id| built.graph.action(id).kind() == ActionKind::Sbom)
        .collect();
    let [id] = sboms.as_slice() else {
        unreachable!("one kernel target lowers one SBOM");
    };
    let (Status::Cached { key, .. } | Status::Executed { key, .. } | Status::Remote { key, .. }) =
        &built.report.status[id.index()]
    else {
        return Ok(built.exit_code(&request.cancel).max(1));
    };
    let text = (cache.read_output(*key, crate::recipe::SBOM_FILE))
        .map_err(|e| miette::miette!("the SBOM of {label}: {e}"))?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&text);
    Ok(0)
}
