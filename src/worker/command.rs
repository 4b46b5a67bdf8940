//! Running one REAPI `Command` in its laid-out input root: on the host, or in the container
//! image its platform names, through Docker (see [`super::container`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::container::Containers;

/// Where a worker runs commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// On this machine, as the worker's user.
    Host,
    /// In the action's `container-image`, through the Docker engine.
    Docker,
}

/// The platform property naming the image a command runs in: `docker://NAME@sha256:HEX`.
pub const CONTAINER_IMAGE: &str = "container-image";

/// How a command ended.
pub enum Ended {
    Exited(i32),
    /// Killed for running past the action's timeout.
    TimedOut,
    /// Killed because the lease was taken back or the worker is stopping.
    Cancelled,
}

/// A command ready to run.
pub struct Run<'a> {
    pub command: &'a re::Command,
    /// The input root, laid out.
    pub root: &'a Path,
    /// The image, for the Docker executor: an ID or `name@sha256:…`.
    pub image: Option<String>,
    pub stdout: &'a Path,
    pub stderr: &'a Path,
    pub timeout: Option<Duration>,
    pub cancel: &'a Arc<AtomicBool>,
    /// The lease's slot, whose container (Docker executor) runs the command, and the slot's
    /// directory, which holds `root` and is all the container sees of the worker.
    pub slot: (usize, &'a Path),
    pub containers: &'a Containers,
}

/// The working directory inside the input root: relative, without `..`.
pub fn working_directory(root: &Path, command: &re::Command) -> Result<PathBuf, String> {
    let wd = &command.working_directory;
    if wd.starts_with('/') || wd.split('/').any(|c| c == "..") {
        return Err(format!(
            "the working directory `{wd}` leaves the input root"
        ));
    }
    let at = root.join(wd);
    std::fs::create_dir_all(&at).map_err(|e| format!("creating the working directory: {e}"))?;
    // A symlink of the input root on the way would put the command, and the outputs read
    // after it, anywhere on the worker.
    let real = at.canonicalize().map_err(|e| e.to_string())?;
    let real_root = root.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "the working directory `{wd}` leads out of the input root"
        ));
    }
    Ok(at)
}

/// The command's environment: exactly the variables the command names, over the worker's
/// `PATH` on the host (REAPI lets a worker provide defaults) or the image's own in a container.
fn environment(command: &re::Command, executor: Executor) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if executor == Executor::Host {
        env.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        );
    }
    for v in &command.environment_variables {
        env.insert(v.name.clone(), v.value.clone());
    }
    env
}

pub fn run(executor: Executor, run: &Run<'_>) -> Result<Ended, String> {
    let (program, rest) = run
        .command
        .arguments
        .split_first()
        .ok_or("the command has no arguments")?;
    let cwd = working_directory(run.root, run.command)?;
    let env = environment(run.command, executor);
    let stdout = std::fs::File::create(run.stdout).map_err(|e| format!("stdout: {e}"))?;
    let stderr = std::fs::File::create(run.stderr).map_err(|e| format!("stderr: {e}"))?;
    let mut cmd = match executor {
        Executor::Host => {
            let mut cmd = Command::new(program);
            cmd.args(rest).current_dir(&cwd).env_clear().envs(&env);
            cmd
        }
        Executor::Docker => {
            let image = run
                .image
                .as_deref()
                .ok_or(format!("the action names no `{CONTAINER_IMAGE}` to run in"))?;
            let (slot, mount) = run.slot;
            let mut cmd = run.containers.exec((slot, image, mount), &cwd, &env)?;
            cmd.arg(program).args(rest);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    wait(executor, child, run)
}

use std::os::unix::process::CommandExt;

/// Waits for the command, killing it (its whole process group, and its container) when the
/// timeout passes or the lease is cancelled.
fn wait(executor: Executor, mut child: Child, run: &Run<'_>) -> Result<Ended, String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            use std::os::unix::process::ExitStatusExt;
            return Ok(Ended::Exited(
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            ));
        }
        let timed_out = run.timeout.is_some_and(|t| started.elapsed() > t);
        if timed_out || run.cancel.load(Ordering::Relaxed) {
            if let (Executor::Docker, Some(image)) = (executor, &run.image) {
                run.containers.discard(run.slot.0, image);
            }
            // SAFETY: a plain kill of the command's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            return Ok(if timed_out {
                Ended::TimedOut
            } else {
                Ended::Cancelled
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The image to run `platform` in: `docker://NAME@sha256:HEX` gives `NAME@sha256:HEX` when the
/// engine knows it by that digest, or the image ID `sha256:HEX` (a builder image made locally
/// has an ID, not a registry digest).
pub fn image_of(platform: Option<&re::Platform>) -> Option<String> {
    let value = platform?
        .properties
        .iter()
        .find(|p| p.name == CONTAINER_IMAGE)?;
    resolve(&value.value)
}

/// The image a `container-image` value names, as [`image_of`] gives it.
///
/// Every lease asks, so an image the engine knew by its digest is remembered for the worker's
/// life: an ID names content, which cannot change under it, and asking the engine again cost
/// each lease a `docker image inspect`. An image it did not know is asked about again next
/// time: a pull may have brought it since.
pub fn resolve(value: &str) -> Option<String> {
    static KNOWN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let value = value.strip_prefix("docker://")?.to_string();
    let (_, digest) = value.rsplit_once('@')?;
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if known.contains(digest) {
        return Some(digest.to_string());
    }
    let inspected = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", digest])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some();
    if inspected {
        known.insert(digest.to_string());
    }
    Some(if inspected { digest.to_string() } else { value })
}

/// The `container-image` value a worker offers for the local image `image`: its name with its
/// ID, `docker://NAME@sha256:HEX`, as a client names a builder image it knows by ID.
pub fn offer(image: &str) -> Result<String, String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .map_err(|e| format!("running docker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--image {image}: the Docker engine has no such image ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = image.split('@').next().unwrap_or(image);
    Ok(format!("docker://{name}@{id}"))
}
