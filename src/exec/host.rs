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

/// In the child, before exec: if kbuild dies, even by SIGKILL, the command gets SIGKILL too
/// (its own children then finish their current job and stop, as make is gone); and the locks in
/// `held` are inherited, so they stay held until the last of those processes ends.
fn die_with(parent: libc::pid_t, held: &[std::os::fd::RawFd]) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // kbuild may have died between fork and prctl: then no signal would ever come.
        if libc::getppid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        for &fd in held {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
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
        let parent = std::process::id() as libc::pid_t;
        let held = inv.held.clone();
        // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || die_with(parent, &held));
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pgid = child.id() as i32;
        cancel.register(pgid);
        let guard = super::guard::spawn(pgid);
        let status = child.wait();
        cancel.unregister(pgid);
        if let Some(guard) = guard {
            super::guard::dismiss(guard);
        }
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
