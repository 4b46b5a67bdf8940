//! Publishing: image references (`kbuild tags`) and pushing to a registry (`kbuild push`).

use std::path::PathBuf;

use super::{Format, Workspace, lower, open_cache, render};
use crate::action::ActionId;
use crate::engine::Status;
use crate::kind::ActionKind;

/// Builds, then publishes: nothing is pushed unless every action succeeded.
pub fn push(
    ws: &Workspace,
    labels: &[String],
    host: &str,
    (insecure, no_move, sign_key): (bool, bool, Option<&std::path::Path>),
    (jobs, views): (usize, &super::views::Views),
) -> miette::Result<i32> {
    use crate::action::Recipe;
    // A key that cannot be read stops the push before anything is built.
    let signer = super::sign::signer(sign_key)?;
    let cache = open_cache(ws)?;
    let exec = ws.executor()?;
    let reporter = views.reporter(false)?;
    let request = ws.request(
        &cache,
        exec.as_ref(),
        (labels, crate::plan::Goal::Build),
        (jobs, false, false),
        reporter,
    )?;
    request.cancel.install_handler();
    // What is pushed is also what out/ holds: a successful build links it.
    let crate::build::Built {
        targets,
        graph,
        report,
        ..
    } = crate::build::build(&request)?;
    eprint!("{}", render::failures(&graph, &report.status));
    if report.status.iter().any(|s| {
        !matches!(
            s,
            Status::Cached { .. } | Status::Executed { .. } | Status::Remote { .. }
        )
    }) {
        eprintln!("kbuild: the build did not finish; nothing was pushed");
        return Ok(if request.cancel.is_cancelled() {
            request.cancel.exit_code()
        } else {
            1
        });
    }
    let tree_of = |id: ActionId| -> miette::Result<PathBuf> {
        let manifest = report.status[id.index()]
            .key()
            .and_then(|k| cache.lookup(k))
            .ok_or_else(|| miette::miette!("no cache entry for {}", graph.action(id).name))?;
        Ok(cache.tree(&manifest)?)
    };
    let registry = crate::oci::registry::Registry::new(host, insecure)?;
    let mut pusher = crate::oci::push::Pusher::new(&registry, no_move).signing(signer.as_ref());
    for id in graph.ids() {
        if let Recipe::Index(spec) = &graph.action(id).recipe {
            pusher.index(&index_item(&graph, id, spec, &tree_of)?)?;
        }
    }
    let builders = push_builders(ws, &targets, &mut pusher)?;
    print_pushed(host, &pusher.report, &builders);
    Ok(0)
}

/// What an index action pushes: its images (each under its arch's tags), their attestation
/// manifests (by digest alone), and the index's tags.
fn index_item(
    graph: &crate::graph::Graph,
    id: ActionId,
    spec: &crate::action::IndexSpec,
    tree_of: &dyn Fn(ActionId) -> miette::Result<PathBuf>,
) -> miette::Result<crate::oci::push::IndexItem> {
    use crate::action::{Recipe, Role};
    let mut images = Vec::new();
    let mut attestations = Vec::new();
    for dep in &graph.action(id).deps {
        if let Role::Attestation(_) = dep.role {
            let dir = tree_of(dep.id)?;
            let descriptor =
                crate::recipe::image::read_descriptor(&dir).map_err(|e| miette::miette!("{e}"))?;
            attestations.push(crate::oci::push::ImageItem {
                dir,
                descriptor,
                tags: Vec::new(),
            });
            continue;
        }
        let image = graph.action(dep.id);
        let Some(Recipe::Tag(tag)) = graph
            .of(ActionKind::Tag, &image.labels[0])
            .map(|t| &graph.action(t).recipe)
        else {
            continue;
        };
        let dir = tree_of(dep.id)?;
        let descriptor =
            crate::recipe::image::read_descriptor(&dir).map_err(|e| miette::miette!("{e}"))?;
        let arch = tag.arch.image_name();
        let tags = vec![
            format!("{}-{arch}", tag.prefix),
            format!("{}-{}-{arch}", tag.prefix, tag.hash),
        ];
        images.push(crate::oci::push::ImageItem {
            dir,
            descriptor,
            tags,
        });
    }
    Ok(crate::oci::push::IndexItem {
        repository: spec.repository.clone(),
        content_tag: format!("{}-{}", spec.prefix, spec.hash),
        version_tag: spec.prefix.clone(),
        images,
        attestations,
    })
}

/// The pushed tags on stdout, what was kept and the counts on stderr.
fn print_pushed(host: &str, r: &crate::oci::push::PushReport, builders: &[String]) {
    for tag in &r.tags {
        println!("{tag}");
    }
    for tag in &r.kept {
        eprintln!("kept {tag} (--no-move)");
    }
    for note in builders {
        eprintln!("kbuild: {note}");
    }
    eprintln!(
        "kbuild: pushed to {host}: {} blob(s) uploaded ({} bytes), {} mounted, {} already there; {} manifest(s); {} tag(s)",
        r.uploaded,
        r.uploaded_bytes,
        r.mounted,
        r.skipped,
        r.manifests,
        r.tags.len()
    );
    if r.signed > 0 {
        eprintln!("kbuild: signed {} manifest(s) (sha256-<hex>.sig)", r.signed);
    }
}

/// Pushes each series' builder image as `<org>/<image>:<version>-builder`, as LinuxKit does, when
/// the local Docker daemon has it; returns a note for each one it could not.
fn push_builders(
    ws: &Workspace,
    targets: &[crate::label::Label],
    pusher: &mut crate::oci::push::Pusher,
) -> miette::Result<Vec<String>> {
    let model = ws.model()?;
    let mut series: Vec<&crate::model::Series> = targets
        .iter()
        .filter_map(|t| model.series(&t.series))
        .collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    series.dedup_by(|a, b| a.name == b.name);
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let docker = ws.docker()?;
    let repo = format!("{}/{}", model.defaults.org, model.defaults.image);
    let scratch = tempfile::tempdir().map_err(|e| miette::miette!("a temporary directory: {e}"))?;
    let mut notes = Vec::new();
    // Series sharing a builder share its export, and its failure.
    let mut exported = std::collections::BTreeMap::new();
    for s in series {
        let tag = format!("{}-builder", s.version);
        let export = exported.entry(s.builder.as_str()).or_insert_with(|| {
            crate::exec::docker::export::export(&docker, &s.builder, scratch.path())
                .map_err(|e| e.to_string())
        });
        match export {
            Ok(descriptor) => {
                let item = crate::oci::push::ImageItem {
                    dir: scratch.path().to_path_buf(),
                    descriptor: descriptor.clone(),
                    tags: vec![tag],
                };
                pusher.image(&repo, &item)?;
            }
            Err(e) => notes.push(format!("no {repo}:{tag}: {e}")),
        }
    }
    Ok(notes)
}

/// References per target: the arch-specific ones and those of the multi-arch index, read from
/// each target's tag action.
pub fn tags(ws: &Workspace, labels: &[String], format: Format) -> miette::Result<i32> {
    let (targets, graph) = lower(ws, labels)?;
    // `push` also publishes each series' builder image, as LinuxKit does.
    let model = ws.model()?;
    let builder = |target: &crate::label::Label| {
        let series = model.series(&target.series)?;
        let (org, image) = (&model.defaults.org, &model.defaults.image);
        Some(format!("{org}/{image}:{}-builder", series.version))
    };
    let mut rows = Vec::new();
    for target in &targets {
        let id = graph
            .of(ActionKind::Tag, target)
            .expect("every target has a tag action");
        if let crate::action::Recipe::Tag(spec) = &graph.action(id).recipe {
            let refs = crate::tags::references(
                &spec.repository,
                &spec.prefix,
                &spec.hash,
                spec.arch.image_name(),
            );
            rows.push((target.to_string(), refs, builder(target)));
        }
    }

    match format {
        Format::Json => {
            let value: Vec<_> = rows
                .iter()
                .map(|(t, r, b)| {
                    serde_json::json!({"target": t, "arch": r.arch, "index": r.index, "builder": b})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&value).expect("json"));
        }
        _ => {
            for (target, refs, builder) in &rows {
                println!("{target}");
                for r in refs.arch.iter().chain(&refs.index) {
                    println!("  {r}");
                }
                if let Some(builder) = builder {
                    println!("  {builder}  (the series' builder image)");
                }
            }
        }
    }
    Ok(0)
}
