//! The host executor: real processes with an explicit environment, each in its own process group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Cancel, ExecError, Executor, Invocation, Toolset};
use crate::statcache::StatCache;

#[derive(Debug, Default)]
pub struct Host;

/// Finds `program` on `PATH` as the shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn first_line_of_version(path: &Path) -> String {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Err(e) => format!("unusable ({e})"),
    }
}

impl Executor for Host {
    fn identity(&self, set: &Toolset, stat: &mut StatCache) -> Result<String, ExecError> {
        let mut id = String::from("host");
        for tool in &set.tools {
            let version = match which(tool) {
                Some(path) => stat.tool_version(&path, || first_line_of_version(&path)),
                None => "missing".to_string(),
            };
            id.push_str(&format!("; {tool}={version}"));
        }
        Ok(id)
    }

    fn run(&self, inv: &Invocation, log: &std::fs::File, cancel: &Cancel) -> Result<(), ExecError> {
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let spawn_err = |source| ExecError::Spawn {
            program: inv.program.clone(),
            source,
        };
        let mut cmd = Command::new(&inv.program);
        cmd.args(&inv.args)
            .env_clear()
            .envs(&inv.env)
            .current_dir(&inv.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(spawn_err)?)
            .stderr(log.try_clone().map_err(spawn_err)?)
            .process_group(0);
        for var in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pgid = child.id() as i32;
        cancel.register(pgid);
        let status = child.wait();
        cancel.unregister(pgid);
        let status = status.map_err(spawn_err)?;
        if cancel.is_cancelled() {
            // The command has gone; whatever of its group ignored SIGTERM, or is still dying,
            // must not outlive kbuild. (A group that still has members keeps its ID from reuse.)
            super::cancel::signal_group(pgid, libc::SIGKILL);
            return Err(ExecError::Cancelled);
        }
        if !status.success() {
            return Err(ExecError::Failed {
                command: inv.display(),
                status: status.to_string(),
            });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "host"
    }
}
