//! The executor's contract: one command fully specified ([`Invocation`]), the programs an
//! action asks for ([`Toolset`]), how a command fails, and the [`Executor`] every way of
//! running commands implements.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cancel::Cancel;
use super::identity::{Identity, Probe};
use crate::arch::Arch;

/// One command, fully specified: nothing is inherited from kbuild's own environment but `PATH`.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Files the command is expected to write, relative to `cwd`; a dry run creates them.
    pub outputs: Vec<PathBuf>,
    /// The arch the action builds for and its builder image: where a container executor runs it.
    pub arch: Option<Arch>,
    pub builder: Option<String>,
    /// Off the critical path: an executor runs it at its lowest CPU priority.
    pub background: bool,
    /// Open lock files (flock) that the command's processes inherit: the lock then stays held
    /// while any of them lives, even if kbuild itself was killed, so a later run waits for the
    /// orphans instead of building beside them. Host processes only.
    pub held: Vec<std::os::fd::RawFd>,
}

/// What an action asks of whoever runs its commands: the tools, the arch it builds for and the
/// builder image its series names. Its identity enters the action's key.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Toolset {
    pub tools: Vec<String>,
    pub arch: Option<Arch>,
    pub builder: Option<String>,
}

impl Invocation {
    pub fn new(program: &str, cwd: impl Into<PathBuf>) -> Invocation {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: cwd.into(),
            outputs: Vec::new(),
            arch: None,
            builder: None,
            background: false,
            held: Vec::new(),
        }
    }

    /// Lets the command's processes hold the lock open on `fd` (see [`Invocation::held`]).
    pub fn hold(mut self, fd: std::os::fd::RawFd) -> Invocation {
        self.held.push(fd);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Invocation {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Invocation {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn envs(mut self, env: &BTreeMap<String, String>) -> Invocation {
        self.env
            .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    pub fn output(mut self, path: impl Into<PathBuf>) -> Invocation {
        self.outputs.push(path.into());
        self
    }

    /// The command as a shell would show it, for logs and errors.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{command}` exited with {status}")]
    Failed {
        command: String,
        status: String,
        /// The exit code, when the command exited rather than died of a signal.
        code: Option<i32>,
    },
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("interrupted")]
    Cancelled,
    /// The executor itself cannot work: no daemon, no builder image.
    #[error("{message}")]
    Unavailable { message: String, hint: String },
}

impl ExecError {
    pub fn unavailable(message: impl Into<String>, hint: impl Into<String>) -> ExecError {
        ExecError::Unavailable {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// What to do about it, where the error knows.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ExecError::Failed { .. } => Some("read the log above; fix the input and run again"),
            ExecError::Unavailable { hint, .. } => Some(hint),
            _ => None,
        }
    }
}

/// Runs commands. Knows nothing of actions, keys or the graph.
pub trait Executor: Send + Sync {
    /// What enters the key of every action this executor runs with `set`: the content of
    /// every host program it names, or the builder image's ID.
    fn identity(&self, set: &Toolset, probe: &mut dyn Probe) -> Result<Identity, ExecError>;

    /// Runs `inv`, appending its output to `log`.
    fn run(&self, inv: &Invocation, log: &std::fs::File, cancel: &Cancel) -> Result<(), ExecError>;

    fn name(&self) -> &'static str;
}

/// Runs `work` on a thread of its own at the lowest CPU priority: `SCHED_IDLE`, with which the
/// scheduler always prefers an ordinary task (nice 19 alone still leaves the work a small share
/// against the compile), and nice 19 where `SCHED_IDLE` is refused. Linux keeps both per thread
/// and threads and processes inherit them, so the work's own threads (xz's encoder) and the
/// commands it starts on the host are background work too. A fresh thread, because an
/// unprivileged thread cannot raise its priority again.
pub fn in_background<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_own_priority();
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Puts the calling thread (and what it starts from now on) at the lowest CPU priority, for
/// good: background work such as remote uploads.
pub fn lower_own_priority() {
    // SAFETY: both calls only read their arguments (the param struct lives across the call);
    // failure leaves the priority as it was, which is still correct, only slower for the compile.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param);
    }
}

#[cfg(test)]
mod tests {
    use super::in_background;

    fn own_nice() -> i32 {
        // SAFETY: getpriority only reads its arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn background_work_and_the_commands_it_starts_run_at_idle_priority() {
        let before = own_nice();
        let (inside, policy, child) = in_background(|| {
            let out = std::process::Command::new("sh")
                .args(["-c", "nice; chrt -p $$"])
                .output()
                .unwrap();
            // SAFETY: sched_getscheduler only reads its argument.
            let policy = unsafe { libc::sched_getscheduler(libc::gettid()) };
            (
                own_nice(),
                policy,
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        });
        assert_eq!((inside, policy), (19, libc::SCHED_IDLE));
        assert!(child.starts_with("19\n"), "{child}");
        assert!(child.contains("SCHED_IDLE"), "{child}");
        assert_eq!(own_nice(), before, "the caller keeps its priority");
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::sched_getscheduler(libc::gettid()) },
            libc::SCHED_OTHER
        );
    }
}
