//! One command in one throwaway builder container.
//!
//! The container's first process is a small shell that runs the command, watches its own stdin
//! and prints the command's exit status on stderr. kbuild keeps stdin open for as long as it
//! waits, so when kbuild dies, even by SIGKILL, the daemon closes that stdin (`StdinOnce`), the
//! shell kills the build and exits, and `AutoRemove` deletes the container: nothing is left
//! behind. (A container created but never started when kbuild died is `owner`'s to sweep.) The
//! command's own output all goes to stdout, which is streamed into the action's log,
//! so the status line cannot be confused with it, and there is no separate wait request that
//! could miss a container that is already removed.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::exec::{Cancel, ExecError, Invocation};

/// Runs `"$@"` with stdin closed and output on stdout; a closed stdin of its own (kbuild gone)
/// kills every other process in the container; the status goes last, alone, on stderr. The
/// watcher reads stdin through fd 3 because a shell gives background lists /dev/null as stdin.
const WRAPPER: &str = r#"exec 3<&0
"$@" </dev/null 2>&1 &
child=$!
{ cat <&3 >/dev/null; kill -KILL -1 2>/dev/null; } &
wait "$child"
status=$?
printf '%s\n' "$status" >&2
"#;

/// Every container kbuild starts carries this label, so tests and users can find them.
pub const LABEL: &str = "org.kbuild.action";

/// What a container needs besides the command: the image, mounts and user.
pub struct Spec<'a> {
    pub image_id: &'a str,
    /// The `owner` label: which kbuild process may still start or remove the container.
    pub owner: Option<&'a str>,
    pub binds: &'a [Mount],
    pub user: &'a str,
}

fn create_body(inv: &Invocation, spec: &Spec) -> ContainerCreateBody {
    let mut cmd = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        WRAPPER.into(),
        "kbuild".into(),
        inv.program.clone(),
    ];
    cmd.extend(inv.args.iter().cloned());
    // The environment is exactly the action's, plus a fixed PATH and a HOME anyone may write.
    let mut env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.push("HOME=/tmp".into());
    ContainerCreateBody {
        image: Some(spec.image_id.to_string()),
        cmd: Some(cmd),
        env: Some(env),
        working_dir: Some(inv.cwd.display().to_string()),
        user: Some(spec.user.to_string()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(true),
        labels: Some(labels(inv, spec)),
        host_config: Some(HostConfig {
            mounts: Some(spec.binds.to_vec()),
            network_mode: Some("none".into()),
            auto_remove: Some(true),
            // The lowest CPU weight the daemon accepts (its default is 1024).
            cpu_shares: inv.background.then_some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn labels(inv: &Invocation, spec: &Spec) -> HashMap<String, String> {
    let mut labels = HashMap::from([(LABEL.to_string(), inv.display())]);
    if let Some(owner) = spec.owner {
        labels.insert(super::owner::LABEL.to_string(), owner.to_string());
    }
    labels
}

fn daemon_error(what: &str) -> impl FnOnce(bollard::errors::Error) -> ExecError + '_ {
    move |e| {
        let message = format!("{what}: {e}");
        let hint = if message.contains("bind source path does not exist") {
            "a builder daemon on another machine must see the workspace and the cache at the \
             same paths (an NFS or sshfs mount); or drop the arch from `builders` to build here"
        } else {
            "check the Docker daemon (`docker info`), or build with `--executor host`"
        };
        ExecError::unavailable(message, hint)
    }
}

/// Runs `inv` to completion, streaming its output into `log`.
pub async fn run(
    client: &bollard::Docker,
    inv: &Invocation,
    spec: &Spec<'_>,
    mut log: &std::fs::File,
    cancel: &Cancel,
) -> Result<(), ExecError> {
    let created = client
        .create_container(None, create_body(inv, spec))
        .await
        .map_err(daemon_error("creating the builder container"))?;
    let id = created.id;
    let attach = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    // Attached before it starts, so no output is missed.
    let attached = match client.attach_container(&id, Some(attach)).await {
        Ok(attached) => attached,
        Err(e) => {
            remove(client, &id).await;
            return Err(daemon_error("attaching to the builder container")(e));
        }
    };
    // Held until the end: dropping it closes the container's stdin, which stops the build.
    let _stdin = attached.input;
    let mut output = attached.output;
    if let Err(e) = client.start_container(&id, None).await {
        remove(client, &id).await;
        return Err(daemon_error("starting the builder container")(e));
    }
    let mut status = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            frame = output.next() => match frame {
                Some(Ok(LogOutput::StdErr { message })) => status.extend_from_slice(&message),
                Some(Ok(frame)) => {
                    let _ = log.write_all(&frame.into_bytes());
                }
                Some(Err(e)) => {
                    let _ = writeln!(log, "kbuild: lost the container's output: {e}");
                    break;
                }
                None => break,
            },
            _ = tick.tick() => {
                if cancel.is_cancelled() {
                    kill(client, &id).await;
                    return Err(ExecError::Cancelled);
                }
            }
        }
    }
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    check_status(inv, &String::from_utf8_lossy(&status))
}

fn check_status(inv: &Invocation, status: &str) -> Result<(), ExecError> {
    match status.trim().parse::<i32>() {
        Ok(0) => Ok(()),
        Ok(code) => Err(ExecError::Failed {
            command: inv.display(),
            status: format!("exit status: {code}"),
            code: Some(code),
        }),
        Err(_) => Err(ExecError::Failed {
            command: inv.display(),
            status: "a builder container that ended without an exit status (killed?)".into(),
            code: None,
        }),
    }
}

async fn kill(client: &bollard::Docker, id: &str) {
    let options = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    let _ = client.kill_container(id, Some(options)).await;
    remove(client, id).await;
}

/// AutoRemove covers a container that ran; one that never started needs removing by hand.
async fn remove(client: &bollard::Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = client.remove_container(id, Some(options)).await;
}

/// The bind mounts for `ro` and `rw` paths, each at its own path inside the container, so that
/// every path in commands, logs and the kernel's debug info is the same as on the host. Mounts,
/// not `Binds`: a daemon that lacks a path refuses it rather than creating an empty directory.
pub fn binds(ro: &[&Path], rw: &[&Path]) -> Vec<Mount> {
    let bind = |path: &&Path, read_only: bool| Mount {
        target: Some(path.display().to_string()),
        source: Some(path.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    };
    let mut out: Vec<Mount> = ro.iter().map(|p| bind(p, true)).collect();
    out.extend(rw.iter().map(|p| bind(p, false)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_decides() {
        let inv = Invocation::new("make", "/");
        assert!(check_status(&inv, "0\n").is_ok());
        assert!(
            matches!(check_status(&inv, "2\n"), Err(ExecError::Failed { status, .. }) if status == "exit status: 2")
        );
        assert!(check_status(&inv, "").is_err());
    }

    #[test]
    fn binds_keep_paths() {
        let b = binds(&[Path::new("/ws")], &[Path::new("/ws/cache/tmp")]);
        let shown: Vec<_> = b
            .iter()
            .map(|m| (m.source.as_deref(), m.target.as_deref(), m.read_only))
            .collect();
        assert_eq!(
            shown,
            vec![
                (Some("/ws"), Some("/ws"), Some(true)),
                (Some("/ws/cache/tmp"), Some("/ws/cache/tmp"), Some(false))
            ]
        );
    }
}
