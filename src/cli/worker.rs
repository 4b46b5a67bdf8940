//! `kbuild worker`: the command line of the Remote Workers API bot (src/worker/).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::worker::{Executor, Options, proto::Property};

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The server's Bots and CAS endpoint: grpc://HOST:PORT or grpcs://HOST:PORT.
    #[arg(long, env = "KBUILD_WORKER_SERVER")]
    server: String,
    /// The REAPI instance name.
    #[arg(long, default_value = "")]
    instance: String,
    /// Leases run at once.
    #[arg(short, long, default_value_t = 1)]
    jobs: usize,
    /// An image this worker runs actions in (Docker executor), offered as the platform
    /// property `container-image=docker://IMAGE@sha256:ID`. Repeatable.
    #[arg(long = "image", value_name = "IMAGE")]
    images: Vec<String>,
    /// Another platform property to offer, KEY=VALUE. Repeatable.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// The worker's blob store and scratch space [default: ~/.cache/kbuild-worker].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `executor` is the global `--executor`: `docker` (the default here) runs each action in its
/// `container-image`, `host` on this machine.
pub fn run(args: &WorkerArgs, executor: Option<super::ExecutorKind>) -> miette::Result<i32> {
    let executor = match executor {
        None | Some(super::ExecutorKind::Docker) => Executor::Docker,
        Some(super::ExecutorKind::Host) => Executor::Host,
        Some(super::ExecutorKind::DryRun) => {
            return Err(miette::miette!(
                help = "run the worker with --executor docker or --executor host",
                "a worker cannot dry-run: its clients wait for real results"
            ));
        }
    };
    let mut properties = Vec::new();
    for p in &args.properties {
        let (key, value) = p.split_once('=').ok_or_else(|| {
            miette::miette!(
                help = "give each property as KEY=VALUE, e.g. --property pool=kernel",
                "`--property {p}` has no `=`"
            )
        })?;
        properties.push(Property::new(key, value));
    }
    for image in &args.images {
        properties.push(Property::new(
            crate::worker::command::CONTAINER_IMAGE,
            &crate::worker::command::offer(image).map_err(|e| miette::miette!("{e}"))?,
        ));
    }
    if executor == Executor::Host && !args.images.is_empty() {
        return Err(miette::miette!(
            help = "drop --image, or run with --executor docker",
            "--image names a container image, but --executor host runs commands on this host"
        ));
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/kbuild-worker"),
    };
    let stop = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let stop = stop.clone();
        // SAFETY: the handler only increments an atomic counter.
        unsafe {
            signal_hook::low_level::register(signal, move || {
                stop.fetch_add(1, Ordering::Relaxed);
            })
        }
        .map_err(|e| miette::miette!("installing the signal handler: {e}"))?;
    }
    let options = Options {
        server: args.server.clone(),
        instance: args.instance.clone(),
        jobs: args.jobs.max(1),
        executor,
        properties,
        dir,
    };
    crate::worker::serve(&options, stop).map_err(|e| miette::miette!("{e}"))?;
    Ok(0)
}
