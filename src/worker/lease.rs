//! One lease, start to end: the Action from its payload, the Command and the input root from
//! CAS, the command run, its outputs, stdout and stderr uploaded, and the `ActionResult` (or
//! the status that says why there is none) to complete the lease with.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::rpc::Status;
use prost::Message;
use prost_types::Any;

use super::command::{self, Ended, Executor, Run};
use super::container::Containers;
use super::inputs::{self, Store};
use super::outputs::{self, Uploads};
use crate::remote::{Function, Source, Transport};

const ACTION_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.Action";
const DIGEST_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.Digest";
pub const RESULT_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult";

/// gRPC codes a lease's status carries.
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const FAILED_PRECONDITION: i32 = 9;
const ABORTED: i32 = 10;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// What the worker brings to every lease.
pub struct Context<'a> {
    pub cas: &'a dyn Transport,
    pub function: Function,
    pub store: &'a Store,
    pub executor: Executor,
    /// Where leases get their directories.
    pub work: &'a Path,
    pub bot_id: &'a str,
    pub containers: &'a Containers,
}

fn status(code: i32, message: impl Into<String>) -> Status {
    Status {
        code,
        message: message.into(),
        details: Vec::new(),
    }
}

/// The directory of lease slot `slot` in the worker's `work`.
pub fn slot_dir(work: &Path, slot: usize) -> std::path::PathBuf {
    work.join(format!("slot-{slot}"))
}

/// Runs the lease in `slot` (one lease at a time per slot) and gives its result, or the status
/// that ends it without one.
pub fn execute(
    ctx: &Context<'_>,
    slot: usize,
    payload: Option<&Any>,
    cancel: &Arc<AtomicBool>,
) -> Result<re::ActionResult, Status> {
    let action = action_of(ctx, payload)?;
    let command: re::Command = message(ctx, action.command_digest.as_ref(), "command")?;
    // The slot's directory stays (its container mounts it); the lease's inside it goes.
    let slot_dir = slot_dir(ctx.work, slot);
    let dir = slot_dir.join("lease");
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&dir).map_err(|e| status(INTERNAL, format!("{e}")))?;
    let ran = run_in(ctx, &action, &command, (slot, &slot_dir), &root, cancel);
    let _ = std::fs::remove_dir_all(&dir);
    ran
}

fn action_of(ctx: &Context<'_>, payload: Option<&Any>) -> Result<re::Action, Status> {
    let payload = payload.ok_or_else(|| status(INVALID_ARGUMENT, "the lease has no payload"))?;
    match payload.type_url.as_str() {
        ACTION_TYPE => re::Action::decode(&payload.value[..])
            .map_err(|e| status(INVALID_ARGUMENT, format!("the Action does not decode: {e}"))),
        DIGEST_TYPE => {
            let digest = re::Digest::decode(&payload.value[..]).map_err(|e| {
                status(INVALID_ARGUMENT, format!("the digest does not decode: {e}"))
            })?;
            message(ctx, Some(&digest), "action")
        }
        other => Err(status(
            INVALID_ARGUMENT,
            format!("a lease of `{other}`: this worker runs REAPI Actions"),
        )),
    }
}

/// A message read from CAS and checked against its digest.
fn message<M: Message + Default>(
    ctx: &Context<'_>,
    digest: Option<&re::Digest>,
    what: &str,
) -> Result<M, Status> {
    let digest = digest.ok_or_else(|| status(INVALID_ARGUMENT, format!("no {what} digest")))?;
    let read = ctx
        .cas
        .read_blobs(ctx.function, std::slice::from_ref(digest))
        .map_err(|e| status(UNAVAILABLE, format!("reading the {what}: {e}")))?;
    let bytes = read
        .into_iter()
        .find(|(d, _)| d == digest)
        .map(|(_, b)| b)
        .ok_or_else(|| status(FAILED_PRECONDITION, format!("the server lacks the {what}")))?;
    if ctx.function.of_bytes(&bytes) != *digest {
        return Err(status(
            UNAVAILABLE,
            format!("the server sent other bytes for the {what}"),
        ));
    }
    M::decode(&bytes[..]).map_err(|e| status(INVALID_ARGUMENT, format!("the {what}: {e}")))
}

/// The output paths of a command, whichever of REAPI's two ways it declares them, relative to
/// its working directory; each must stay below it. (`output_files` and `output_directories`
/// are deprecated since v2.1, but clients older than it, and `bgd execute`, still send them.)
#[allow(deprecated)]
fn output_paths(command: &re::Command) -> Result<Vec<String>, Status> {
    let paths: Vec<String> = if command.output_paths.is_empty() {
        command
            .output_files
            .iter()
            .chain(&command.output_directories)
            .cloned()
            .collect()
    } else {
        command.output_paths.clone()
    };
    for p in &paths {
        if p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(status(
                INVALID_ARGUMENT,
                format!("the output path `{p}` leaves the working directory"),
            ));
        }
    }
    Ok(paths)
}

fn run_in(
    ctx: &Context<'_>,
    action: &re::Action,
    command: &re::Command,
    slot: (usize, &Path),
    root: &Path,
    cancel: &Arc<AtomicBool>,
) -> Result<re::ActionResult, Status> {
    let dir = root.parent().expect("the root is in the lease's directory");
    let started = std::time::SystemTime::now();
    let input_root = action.input_root_digest.as_ref();
    let input_root = input_root.ok_or_else(|| status(INVALID_ARGUMENT, "no input root"))?;
    inputs::lay_out(ctx.cas, ctx.function, ctx.store, input_root, root).map_err(|e| {
        let code = if e.missing.is_empty() {
            UNAVAILABLE
        } else {
            FAILED_PRECONDITION
        };
        status(code, e.message)
    })?;
    let laid_out = std::time::SystemTime::now();
    let outputs = output_paths(command)?;
    let wd = command::working_directory(root, command).map_err(|e| status(INVALID_ARGUMENT, e))?;
    for path in &outputs {
        if let Some((parent, _)) = path.rsplit_once('/') {
            std::fs::create_dir_all(wd.join(parent))
                .map_err(|e| status(INTERNAL, format!("creating `{parent}`: {e}")))?;
        }
    }
    // The Command's platform is deprecated in favour of the Action's; older clients set only it.
    #[allow(deprecated)]
    let platform = action.platform.as_ref().or(command.platform.as_ref());
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    let timeout = action.timeout.as_ref().map(|t| {
        Duration::from_secs(t.seconds.max(0) as u64) + Duration::from_nanos(t.nanos.max(0) as u64)
    });
    let run = Run {
        command,
        root,
        image: command::image_of(platform),
        stdout: &stdout,
        stderr: &stderr,
        timeout: timeout.filter(|t| !t.is_zero()),
        cancel,
        slot,
        containers: ctx.containers,
    };
    let executing = std::time::SystemTime::now();
    let exit_code = match command::run(ctx.executor, &run) {
        Ok(Ended::Exited(code)) => code,
        Ok(Ended::TimedOut) => {
            return Err(status(DEADLINE_EXCEEDED, "the action ran past its timeout"));
        }
        Ok(Ended::Cancelled) => return Err(status(ABORTED, "the lease was cancelled")),
        Err(e) => return Err(status(INVALID_ARGUMENT, e)),
    };
    let executed = std::time::SystemTime::now();
    let mut result = re::ActionResult {
        exit_code,
        ..Default::default()
    };
    // The container's scratch is emptied for the slot's next lease while this one's outputs
    // go up.
    std::thread::scope(|scope| {
        if let (Executor::Docker, Some(image)) = (ctx.executor, &run.image) {
            scope.spawn(|| ctx.containers.clean(slot.0, image));
        }
        upload(ctx, &wd, &outputs, [&stdout, &stderr], &mut result)
    })?;
    // Every phase's times, as REAPI defines them: the client says where a remote action's
    // time went (queue, inputs, command, outputs) from them.
    let now = std::time::SystemTime::now();
    result.execution_metadata = Some(re::ExecutedActionMetadata {
        worker: ctx.bot_id.to_string(),
        worker_start_timestamp: Some(timestamp(started)),
        input_fetch_start_timestamp: Some(timestamp(started)),
        input_fetch_completed_timestamp: Some(timestamp(laid_out)),
        execution_start_timestamp: Some(timestamp(executing)),
        execution_completed_timestamp: Some(timestamp(executed)),
        output_upload_start_timestamp: Some(timestamp(executed)),
        output_upload_completed_timestamp: Some(timestamp(now)),
        worker_completed_timestamp: Some(timestamp(now)),
        ..Default::default()
    });
    Ok(result)
}

/// Uploads what the command left at its output paths, and its stdout and stderr, into
/// `result`.
fn upload(
    ctx: &Context<'_>,
    wd: &Path,
    outputs: &[String],
    [stdout, stderr]: [&Path; 2],
    result: &mut re::ActionResult,
) -> Result<(), Status> {
    let mut uploads = Uploads::default();
    outputs::collect(ctx.function, wd, outputs, result, &mut uploads)
        .map_err(|e| status(INTERNAL, e))?;
    let logs: Vec<(re::Digest, Vec<u8>)> = [stdout, stderr]
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            (ctx.function.of_bytes(&bytes), bytes)
        })
        .collect();
    uploads
        .send(ctx.cas, ctx.function)
        .map_err(|e| status(UNAVAILABLE, e))?;
    let sources: Vec<_> = logs
        .iter()
        .map(|(d, b)| (d.clone(), Source::Bytes(b)))
        .collect();
    ctx.cas
        .write_blobs(ctx.function, &sources)
        .map_err(|e| status(UNAVAILABLE, format!("uploading stdout and stderr: {e}")))?;
    result.stdout_digest = Some(logs[0].0.clone());
    result.stderr_digest = Some(logs[1].0.clone());
    Ok(())
}

fn timestamp(t: std::time::SystemTime) -> bazel_remote_apis::google::protobuf::Timestamp {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    bazel_remote_apis::google::protobuf::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}
