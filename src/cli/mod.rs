//! The command line: parses arguments, loads the workspace, and prints results.

mod render;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::cache::Cache;
use crate::engine::{Engine, Status};
use crate::exec::{Cancel, DryRun, Executor, Host};
use crate::graph::Graph;
use crate::label::{self, Label};
use crate::model::Model;

#[derive(Parser, Debug)]
#[command(
    name = "kbuild",
    version,
    about = "Content-addressed builds of LinuxKit-style kernels"
)]
pub struct Cli {
    /// Run as if started in DIR (the directory holding kernel.kdl).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The action cache [default: <workspace>/cache].
    #[arg(long, global = true, env = "KBUILD_CACHE", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate kernel.kdl and the files it names.
    Check,
    /// List series, versions and targets.
    List,
    /// Show the actions that would run and those already cached.
    Plan {
        /// Targets or patterns (default: //...).
        labels: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Build targets.
    Run {
        /// Targets or patterns (default: //...).
        labels: Vec<String>,
        /// Actions run at once [default: the number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Keep building what does not depend on a failure.
        #[arg(short, long)]
        keep_going: bool,
        #[arg(long, value_enum, default_value_t = ExecutorKind::Host)]
        executor: ExecutorKind,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Explain, per action, why it ran in the last run or would run now.
    Why { labels: Vec<String> },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Dot,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExecutorKind {
    /// Run commands on this machine.
    Host,
    /// Record commands and fake their outputs (for testing kbuild itself).
    DryRun,
}

/// Exit codes: 0 success, 1 build failure, 2 usage or manifest error.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            2
        }
    }
}

struct Workspace {
    root: PathBuf,
    model: Model,
    cache_dir: PathBuf,
}

fn load(cli: &Cli) -> miette::Result<Workspace> {
    let root = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = root.canonicalize().map_err(|e| {
        miette::miette!(
            help = "pass an existing directory to -C",
            "cannot use `{}`: {e}",
            root.display()
        )
    })?;
    let cache_dir = cli.cache_dir.clone().unwrap_or_else(|| root.join("cache"));
    let ws_id = crate::digest::Digest::of_bytes(root.as_os_str().as_encoded_bytes()).short();
    let memo = cache_dir.join("state").join(format!("manifest-{ws_id}.json"));
    let model = match cli.command {
        // `check` always parses, so that it reports exactly what the file says.
        Command::Check => crate::manifest::load(&root)?,
        _ => crate::manifest::load_memoized(&root, &memo)?,
    };
    Ok(Workspace {
        root,
        model,
        cache_dir,
    })
}

fn dispatch(cli: Cli) -> miette::Result<i32> {
    let ws = load(&cli)?;
    match &cli.command {
        Command::Check => {
            let targets = label::all_targets(&ws.model);
            eprintln!(
                "kernel.kdl is valid: {} series, {} targets",
                ws.model.series.len(),
                targets.len()
            );
            Ok(0)
        }
        Command::List => {
            print!("{}", render::list(&ws.model));
            Ok(0)
        }
        Command::Plan { labels, format } => plan(&ws, labels, *format),
        Command::Run {
            labels,
            jobs,
            keep_going,
            executor,
            format,
        } => {
            let exec: Box<dyn Executor> = match executor {
                ExecutorKind::Host => Box::new(Host),
                ExecutorKind::DryRun => Box::new(DryRun::default()),
            };
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            run(&ws, labels, exec.as_ref(), jobs, *keep_going, *format)
        }
        Command::Why { labels } => why(&ws, labels),
    }
}

fn lower(ws: &Workspace, labels: &[String]) -> miette::Result<(Vec<Label>, Graph)> {
    let targets = label::resolve(&ws.model, labels)?;
    let graph = crate::plan::lower(&ws.model, &targets)?;
    Ok((targets, graph))
}

fn open_cache(ws: &Workspace) -> miette::Result<Cache> {
    Ok(Cache::open(&ws.cache_dir)?)
}

fn engine<'a>(
    ws: &'a Workspace,
    cache: &'a Cache,
    exec: &'a dyn Executor,
    jobs: usize,
    keep_going: bool,
) -> Engine<'a> {
    Engine {
        workspace: &ws.root,
        cache,
        exec,
        jobs,
        keep_going,
        cancel: Cancel::default(),
        progress: true,
    }
}

fn plan(ws: &Workspace, labels: &[String], format: Format) -> miette::Result<i32> {
    let (_, graph) = lower(ws, labels)?;
    let cache = open_cache(ws)?;
    let report = engine(ws, &cache, &Host, 1, false).plan(&graph);
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    match format {
        Format::Text => print!("{}", render::plan_text(&graph, &report.status)),
        Format::Json => println!("{}", render::plan_json(&graph, &report.status)),
        Format::Dot => print!(
            "{}",
            graph.to_dot(
                |id| if matches!(report.status[id.index()], Status::Cached { .. }) {
                    "cached"
                } else {
                    "run"
                }
            )
        ),
    }
    Ok(0)
}

fn run(
    ws: &Workspace,
    labels: &[String],
    exec: &dyn Executor,
    jobs: usize,
    keep_going: bool,
    format: Format,
) -> miette::Result<i32> {
    let (targets, graph) = lower(ws, labels)?;
    let cache = open_cache(ws)?;
    let mut engine = engine(ws, &cache, exec, jobs, keep_going);
    engine.progress = format == Format::Text;
    engine.cancel.install_handler();
    let report = engine.run(&graph)?;
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    let failed = report
        .status
        .iter()
        .any(|s| matches!(s, Status::Failed { .. } | Status::Skipped));
    if !failed {
        link_outputs(ws, &cache, &graph, &targets, &report.status)?;
    }
    eprint!("{}", render::failures(&graph, &report.status));
    match format {
        Format::Json => println!(
            "{}",
            render::run_json(&graph, &report.status, report.seconds)
        ),
        _ => eprint!(
            "{}",
            render::run_text(&graph, &report.status, report.seconds)
        ),
    }
    if engine.cancel.is_cancelled() {
        return Ok(130);
    }
    Ok(if failed { 1 } else { 0 })
}

/// Points `out/<series>/<target>` at each target's image files, and `<target>.tags` at its tags.
fn link_outputs(
    ws: &Workspace,
    cache: &Cache,
    graph: &Graph,
    targets: &[Label],
    status: &[Status],
) -> miette::Result<()> {
    for target in targets {
        let dir = ws.root.join("out").join(&target.series);
        let links = [
            ("package", target.name(), ""),
            ("tag", format!("{}.tags", target.name()), "tags"),
        ];
        for (kind, link, file) in links {
            let Some(id) = graph.find(&format!("{kind} {target}")) else {
                continue;
            };
            let Some(output) = status[id.index()].output() else {
                continue;
            };
            let link = dir.join(link);
            let tree = cache.tree_path(output).join(file);
            // A null build finds every link in place and reads no manifest.
            if std::fs::read_link(&link).is_ok_and(|t| t == tree) && cache.tree_ready(output) {
                continue;
            }
            let key = status[id.index()].key();
            let Some(manifest) = key.and_then(|key| cache.lookup(key)) else {
                continue;
            };
            let tree = cache.tree(&manifest)?.join(file);
            replace_symlink(&tree, &link)
                .map_err(|e| miette::miette!("cannot link {}: {e}", link.display()))?;
        }
    }
    Ok(())
}

fn replace_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    std::fs::create_dir_all(link.parent().expect("out links have parents"))?;
    let tmp = link.with_file_name(format!(".kbuild-link.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

fn why(ws: &Workspace, labels: &[String]) -> miette::Result<i32> {
    let (_, graph) = lower(ws, labels)?;
    let cache = open_cache(ws)?;
    let report = engine(ws, &cache, &Host, 1, false).plan(&graph);
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    print!("{}", render::why_text(&graph, &report.status, &report.last));
    Ok(0)
}
