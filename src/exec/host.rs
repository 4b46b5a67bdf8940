//! The host executor: real processes with an explicit environment, each in its own process group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Cancel, ExecError, Executor, Identity, Invocation, Probe, Program, Toolset};

#[derive(Debug, Default)]
pub struct Host;

/// What a program of a toolset is on this host: the content digest of the file `PATH` resolves
/// it to, or `absent`. `CC -print-prog-name=X` and `CC -print-file-name=X` name the file the
/// compiler itself would use (its `cc1`, its `libc.a`).
fn program_state(tool: &str, probe: &mut dyn Probe) -> Program {
    let file = match tool.split_once(" -print-") {
        None => probe.which(tool),
        Some((compiler, question)) => probe.which(compiler).and_then(|cc| {
            let answer = probe.answer(&cc, question, &mut || ask(&cc, question));
            let path = PathBuf::from(answer);
            path.is_absolute().then_some(path)
        }),
    };
    match file.filter(|f| f.is_file()).map(|f| probe.digest(&f)) {
        Some(Ok(digest)) => Program::File(digest),
        Some(Err(_)) => Program::Unreadable,
        None => Program::Absent,
    }
}

/// The compiler's answer to `-print-QUESTION`: a path when it knows the file, else the bare name.
fn ask(compiler: &Path, question: &str) -> String {
    let out = Command::new(compiler)
        .arg(format!("-print-{question}"))
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => String::new(),
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
    fn identity(&self, set: &Toolset, probe: &mut dyn Probe) -> Result<Identity, ExecError> {
        let programs = set
            .tools
            .iter()
            .map(|tool| {
                let state = probe.program(tool).unwrap_or_else(|| {
                    let state = program_state(tool, probe);
                    probe.remember_program(tool, &state);
                    state
                });
                (tool.clone(), state)
            })
            .collect();
        Ok(Identity::Host { programs })
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
                code: status.code(),
            });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "host"
    }
}
