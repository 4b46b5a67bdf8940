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
}

fn status(code: i32, message: impl Into<String>) -> Status {
    Status {
        code,
        message: message.into(),
        details: Vec::new(),
    }
}

/// Runs the lease and gives its result, or the status that ends it without one.
pub fn execute(
    ctx: &Context<'_>,
    id: &str,
    payload: Option<&Any>,
    cancel: &Arc<AtomicBool>,
) -> Result<re::ActionResult, Status> {
    let action = action_of(ctx, payload)?;
    let command: re::Command = message(ctx, action.command_digest.as_ref(), "command")?;
    let dir = ctx.work.join(sanitize(id));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&dir).map_err(|e| status(INTERNAL, format!("{e}")))?;
    let ran = run_in(ctx, &action, &command, &dir, &root, cancel);
    let _ = std::fs::remove_dir_all(&dir);
    ran
}

/// A lease id as a directory name.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
    dir: &Path,
    root: &Path,
    cancel: &Arc<AtomicBool>,
) -> Result<re::ActionResult, Status> {
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
        name: format!(
            "kbuild-worker-{}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ),
    };
    let exit_code = match command::run(ctx.executor, &run) {
        Ok(Ended::Exited(code)) => code,
        Ok(Ended::TimedOut) => {
            return Err(status(DEADLINE_EXCEEDED, "the action ran past its timeout"));
        }
        Ok(Ended::Cancelled) => return Err(status(ABORTED, "the lease was cancelled")),
        Err(e) => return Err(status(INVALID_ARGUMENT, e)),
    };
    let mut result = re::ActionResult {
        exit_code,
        execution_metadata: Some(re::ExecutedActionMetadata {
            worker: ctx.bot_id.to_string(),
            worker_start_timestamp: Some(timestamp(started)),
            worker_completed_timestamp: Some(timestamp(std::time::SystemTime::now())),
            ..Default::default()
        }),
        ..Default::default()
    };
    upload(ctx, &wd, &outputs, [&stdout, &stderr], &mut result)?;
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
