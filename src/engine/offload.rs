//! Remote execution in a run (`--remote-executor`): which misses go to the cluster, and what a
//! failure of the cluster does. A remote result is taken like a local one: its outputs are
//! checked against their digests, ingested, and cached under the action's key, so a later run
//! anywhere finds it. A command that fails remotely (a compile error) fails the action with
//! its log; only a cluster or connection that gives no result falls back to a local run.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exec::ExecError;
use crate::recipe::remote::{self, Placement};
use crate::recipe::{Ctx, RecipeError};
use crate::remote::{Executed, Remote, RemoteError};

/// `--remote-exec`: where the actions a cluster can run go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecMode {
    /// Every action the cluster can run, even one a kept build directory would only update.
    Always,
    /// Remotely, but for an incremental build a kept build directory here makes faster.
    Auto,
    /// Nothing remotely.
    Never,
}

/// How often a remote execution is tried before the fallback (1 s, 2 s between tries).
const TRIES: u32 = 3;

pub struct Offload {
    pub remote: Arc<Remote>,
    pub mode: ExecMode,
    /// Run here, with one warning, when the cluster gives no result; else the action fails.
    pub fallback_local: bool,
    /// Remote executions in flight at once.
    pub jobs: usize,
    /// How long an action may wait for a worker before the cluster counts as failing it.
    pub queue_timeout: Duration,
    warned: AtomicBool,
}

impl Offload {
    pub fn new(
        remote: Arc<Remote>,
        (mode, fallback_local): (ExecMode, bool),
        jobs: usize,
        queue_timeout: Duration,
    ) -> Offload {
        Offload {
            remote,
            mode,
            fallback_local,
            jobs: jobs.max(1),
            queue_timeout,
            warned: AtomicBool::new(false),
        }
    }

    /// Where an action of `recipe` runs in this run.
    pub fn placement(
        &self,
        recipe: &crate::action::Recipe,
        toolchain: &crate::exec::Identity,
        build_root: &Path,
    ) -> Placement {
        if self.mode == ExecMode::Never || !self.remote.is_usable() {
            return Placement::Local("remote execution is off");
        }
        let in_builder_image = matches!(toolchain, crate::exec::Identity::Docker { .. });
        remote::placement(
            recipe,
            in_builder_image,
            build_root,
            self.mode == ExecMode::Auto,
        )
    }

    /// Runs `ctx`'s action on the cluster, its outputs left in `ctx.out`; `None` when it is to
    /// run here after all (the cluster gave no result and the fallback is local).
    pub fn run(&self, ctx: &Ctx) -> Option<Result<(), RecipeError>> {
        let (command, inputs) = match remote::command(ctx)? {
            Ok(form) => form,
            Err(e) => return Some(Err(e)),
        };
        let _ = writeln!(&*ctx.log, "$ {} (remotely)", command.args.join(" "));
        let cancelled = || ctx.cancel.is_cancelled();
        let mut delay = Duration::from_secs(1);
        let mut last = None;
        for attempt in 1..=TRIES {
            match (self.remote).execute(&command, (&inputs, self.queue_timeout), &cancelled) {
                Ok(executed) => match self.take(ctx, executed) {
                    Ok(done) => return Some(done),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            if ctx.cancel.is_cancelled() {
                return Some(Err(RecipeError::Exec(ExecError::Cancelled)));
            }
            let e = last.as_ref().expect("set above");
            let _ = writeln!(&*ctx.log, "kbuild: remote execution, try {attempt}: {e}");
            if attempt < TRIES {
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        let e = last.expect("at least one try");
        if !self.fallback_local {
            return Some(Err(RecipeError::failed(
                format!("remote execution gave no result: {e}"),
                "check the cluster, or run with --remote-fallback local",
            )));
        }
        // A server gone is gone for the rest of the run (remote cache included, when it is
        // the same): one warning, and no action waits for it again.
        if matches!(e, RemoteError::Down(_)) && !ctx.cancel.is_cancelled() {
            self.remote.switch_off();
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            ctx.report.say(&format!(
                "kbuild: warning: remote execution failed ({e}); running such actions here"
            ));
        }
        let _ = std::fs::remove_dir_all(ctx.out);
        let _ = std::fs::create_dir_all(ctx.out);
        None
    }

    /// A remote execution's answer: the command's output goes to the log; a nonzero exit is the
    /// action's failure; a success's outputs are fetched, checked and finished into `ctx.out`.
    /// The outer error is the cluster's (tried again, then the fallback).
    fn take(&self, ctx: &Ctx, executed: Executed) -> Result<Result<(), RecipeError>, RemoteError> {
        let _ = (&*ctx.log).write_all(&executed.stdout);
        let _ = (&*ctx.log).write_all(&executed.stderr);
        let worker = (executed.result.execution_metadata.as_ref())
            .map_or("", |m| m.worker.as_str())
            .to_string();
        let _ = writeln!(
            &*ctx.log,
            "kbuild: ran remotely on {worker}{}; sent {} bytes in {} blobs; {}",
            if executed.cached { " (cached)" } else { "" },
            executed.sent_bytes,
            executed.sent_blobs,
            executed.phases()
        );
        let code = executed.result.exit_code;
        if code != 0 {
            return Ok(Err(RecipeError::Exec(ExecError::Failed {
                command: format!("{} (remotely, on {worker})", ctx.action.name),
                status: format!("exit status: {code}"),
                code: Some(code),
            })));
        }
        let fetched = ctx.work.join("remote");
        let _ = std::fs::remove_dir_all(&fetched);
        let part = remote::part(&ctx.action.recipe);
        (self.remote).fetch_outputs(&crate::remote::part_of(&executed.result, part), &fetched)?;
        Ok(remote::finish(ctx, &fetched))
    }
}
