//! The Docker executor's containers: one long-lived container per lease slot and image, each
//! lease a `docker exec` in it.
//!
//! A container per lease costs one created, started and removed: 0.15 s on an idle machine and
//! 0.3–0.6 s beside a build, against 0.04 s for an exec. Leases stay as far apart as they were
//! with a container each: a slot runs one lease at a time, and its container mounts only that
//! slot's directory; the image's filesystem is read-only and its scratch places (/tmp,
//! /var/tmp, /dev/shm) are emptied after every lease, so nothing a lease writes outside its
//! input root reaches the next.
//!
//! A container ends with its worker, however the worker ends: its only process is `cat` on a
//! stdin the worker holds (`docker start -ai` on a pipe), and it is created with `--rm`. One
//! created but never started (the worker killed in between) carries the worker's owner label,
//! and the next worker on the machine removes it. A cancelled or timed-out lease removes its
//! container by force, which kills the command and everything it started; the slot's next
//! lease starts another.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exec::docker::owner::{self, Owner};

/// Marks the containers of kbuild workers, beside the owner label.
const LABEL: &str = "org.kbuild.worker";

/// The directories a lease may scribble in outside its input root, emptied after each lease.
const SCRATCH: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// Where a container sees its slot's directory: a path of its own, never below a scratch
/// directory that is emptied (a worker's directory may well be in the host's /tmp). REAPI
/// commands name their files relative to the input root, so its absolute path is free.
const INSIDE: &str = "/kbuild-worker";

/// A running container: its name, and the attached client whose stdin keeps it alive.
struct Running {
    name: String,
    attached: Child,
}

/// The worker's containers, by slot and image.
pub struct Containers {
    /// Prefix of the containers' names: the bot's id.
    bot: String,
    owner: Option<String>,
    running: Mutex<HashMap<(usize, String), Running>>,
}

impl Containers {
    /// The containers of bot `bot` (none yet).
    pub fn new(bot: &str) -> Containers {
        let me = Owner::current();
        Containers {
            bot: bot
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect(),
            owner: me.map(|o| o.label()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The `docker exec` that runs a program for a lease in `slot`, in `image`, in `cwd` (in
    /// `mount`, the slot's directory, which the container sees at [`INSIDE`]); the container
    /// starts on first use.
    pub fn exec(
        &self,
        (slot, image, mount): (usize, &str, &Path),
        cwd: &Path,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Command, String> {
        let name = self.ensure(slot, image, mount)?;
        let inside = cwd
            .strip_prefix(mount)
            .map_err(|_| format!("{} is not in {}", cwd.display(), mount.display()))?;
        let mut cmd = Command::new("docker");
        cmd.arg("exec")
            .arg("-w")
            .arg(Path::new(INSIDE).join(inside));
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(name);
        Ok(cmd)
    }

    /// Starts the containers of the slots whose directories are `mounts` for `image` now, so
    /// that the first leases do not wait for them (a worker that offers an image will run in
    /// it). Best effort: a container that does not start now is tried again by the lease that
    /// needs it.
    pub fn warm(&self, image: &str, mounts: &[std::path::PathBuf]) {
        for (slot, mount) in mounts.iter().enumerate() {
            if std::fs::create_dir_all(mount).is_ok() {
                let _ = self.ensure(slot, image, mount);
            }
        }
    }

    /// After a lease: empties the scratch directories, or, where that fails, removes the
    /// container (the next lease starts a clean one).
    pub fn clean(&self, slot: usize, image: &str) {
        let name = match self.lock().get(&(slot, image.to_string())) {
            Some(r) => r.name.clone(),
            None => return,
        };
        let emptied = Command::new("docker")
            .args(["exec", &name, "find"])
            .args(SCRATCH)
            .args(["-mindepth", "1", "-delete"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !emptied {
            self.discard(slot, image);
        }
    }

    /// Removes the container of `slot` and `image` by force, and with it every process of the
    /// lease running in it.
    pub fn discard(&self, slot: usize, image: &str) {
        let running = self.lock().remove(&(slot, image.to_string()));
        if let Some(running) = running {
            remove(running);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, String), Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name of the running container of `slot` and `image`, started if there is none (or
    /// the one there has ended).
    fn ensure(&self, slot: usize, image: &str, mount: &Path) -> Result<String, String> {
        let key = (slot, image.to_string());
        let mut running = self.lock();
        if let Some(r) = running.get_mut(&key) {
            if matches!(r.attached.try_wait(), Ok(None)) {
                return Ok(r.name.clone());
            }
            let ended = running.remove(&key).expect("present above");
            remove(ended);
        }
        let name = format!("kbuild-worker-{}-{slot}-{}", self.bot, short(image));
        let started = self.start(&name, image, mount)?;
        running.insert(key, started);
        Ok(name)
    }

    fn start(&self, name: &str, image: &str, mount: &Path) -> Result<Running, String> {
        // A container of this name left by this bot (its start failed half way) goes first.
        let _ = quiet(Command::new("docker").args(["rm", "-f", name]));
        // SAFETY: getuid and getgid only read the process's credentials.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mount = mount.display();
        let mut create = Command::new("docker");
        create
            .args(["create", "--rm", "--init", "-i", "--name", name])
            .args(["--network", "none", "--user", &format!("{uid}:{gid}")])
            .args(["--read-only", "-v", &format!("{mount}:{INSIDE}")])
            .args(["--label", LABEL]);
        for dir in SCRATCH.iter().filter(|d| **d != "/dev/shm") {
            create.args(["--tmpfs", &format!("{dir}:rw,exec,mode=1777")]);
        }
        if let Some(owner) = &self.owner {
            create.args(["--label", &format!("{}={owner}", owner::LABEL)]);
        }
        let out = create
            .args([image, "cat"])
            .output()
            .map_err(|e| format!("running docker: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "creating a container of {image}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let attached = Command::new("docker")
            .args(["start", "-ai", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("running docker: {e}"))?;
        let running = Running {
            name: name.to_string(),
            attached,
        };
        match wait_running(name) {
            Ok(()) => Ok(running),
            Err(e) => {
                remove(running);
                Err(e)
            }
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for (_, running) in self.lock().drain() {
            remove(running);
        }
    }
}

/// Waits until Docker says the container runs (`docker start -ai` returns nothing before).
fn wait_running(name: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let out = Command::new("docker")
            .args([
                "container",
                "inspect",
                "--format",
                "{{.State.Status}}",
                name,
            ])
            .output()
            .map_err(|e| format!("running docker: {e}"))?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "running" => return Ok(()),
            "exited" | "dead" => break,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Err(format!(
        "the container {name} did not start (does its image have `cat`?)"
    ))
}

fn remove(mut running: Running) {
    let _ = quiet(Command::new("docker").args(["rm", "-f", &running.name]));
    let _ = running.attached.kill();
    let _ = running.attached.wait();
}

fn quiet(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()
}

/// Twelve characters of an image reference's digest or ID, for a container's name.
fn short(image: &str) -> String {
    let hex = image.rsplit(':').next().unwrap_or(image);
    hex.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// Removes the worker containers on this daemon whose owner on this machine has ended (before
/// their containers started: a started one ends with its worker).
pub fn sweep() {
    let Some(me) = Owner::current() else {
        return;
    };
    let Ok(out) = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={LABEL}")])
        .args([
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{}\"}}}}", owner::LABEL),
        ])
        .output()
    else {
        return;
    };
    let listed = String::from_utf8_lossy(&out.stdout);
    for id in owner::orphans(listed.lines().filter_map(|l| l.split_once(' ')), &me) {
        let _ = quiet(Command::new("docker").args(["rm", "-f", id]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_the_image_s_digest() {
        assert_eq!(
            short("kbuild/builder@sha256:ce3539960c6d97466042"),
            "ce3539960c6d"
        );
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
