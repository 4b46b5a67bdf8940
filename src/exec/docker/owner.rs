//! Which kbuild process a builder container belongs to, and sweeping those whose owner is gone.
//!
//! A container that started is safe: kbuild holds its stdin, and the container ends itself when
//! kbuild dies (see `container`). One created but not yet started is not: if kbuild is killed
//! between creating it and attaching to it, nothing will ever start or remove it. So every
//! container carries its owner — this machine's boot ID, kbuild's PID and that process's start
//! time, which together name one process for as long as the machine is up — and each run, on
//! first reaching a daemon, removes the containers whose owner on this machine no longer runs.
//! Containers of other machines, or of a kbuild still running, are never touched.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

/// The label that names a container's owner, `<boot id>/<pid>/<start time in clock ticks>`.
pub const LABEL: &str = "org.kbuild.owner";

/// One process on one boot of one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    boot: String,
    pid: u32,
    start: u64,
}

impl Owner {
    /// This process, or None where /proc cannot tell (then containers carry no owner and
    /// nothing is swept).
    pub fn current() -> Option<Owner> {
        Owner::of(std::process::id())
    }

    /// The running process `pid`.
    pub fn of(pid: u32) -> Option<Owner> {
        Some(Owner {
            boot: boot_id()?,
            pid,
            start: start_time(pid)?,
        })
    }

    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.boot, self.pid, self.start)
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.split('/');
        let owner = Owner {
            boot: parts.next()?.to_string(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    /// Whether this owner ran on this boot of this machine and has ended. An owner elsewhere is
    /// never gone as far as we can tell.
    pub fn is_gone(&self, boot: &str) -> bool {
        self.boot == boot && start_time(self.pid) != Some(self.start)
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. A PID
/// reused by another process has another start time.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Of `containers` (each its ID and its owner label), the IDs of those whose owner on this
/// machine has ended: what a sweep removes, whichever way it talks to the daemon (kbuild's
/// runs through its API, `kbuild worker` through the docker CLI). A label that names no owner
/// is never judged gone.
pub fn orphans<'a>(
    containers: impl IntoIterator<Item = (&'a str, &'a str)>,
    me: &Owner,
) -> Vec<&'a str> {
    (containers.into_iter())
        .filter(|(_, label)| Owner::parse(label).is_some_and(|o| o.is_gone(&me.boot)))
        .map(|(id, _)| id)
        .collect()
}

/// Removes (by force) every kbuild container on this daemon whose owner on this machine has
/// ended. Best effort: a container the daemon is already removing, or a daemon that refuses,
/// costs nothing but a retry on the next run.
pub async fn sweep(client: &bollard::Docker, me: &Owner) {
    let filters = HashMap::from([("label", vec![LABEL])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(containers) = client.list_containers(Some(options)).await else {
        return;
    };
    let owned: Vec<(String, String)> = (containers.into_iter())
        .filter_map(|c| Some((c.id?, c.labels?.remove(LABEL)?)))
        .collect();
    let pairs = owned
        .iter()
        .map(|(id, label)| (id.as_str(), label.as_str()));
    for id in orphans(pairs, me) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = client.remove_container(id, Some(options)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_live_owner() {
        let me = Owner::current().expect("Linux has /proc");
        assert_eq!(Owner::parse(&me.label()), Some(me.clone()));
        assert!(!me.is_gone(&me.boot));
    }

    #[test]
    fn an_ended_process_is_gone_and_a_foreign_one_is_not() {
        let me = Owner::current().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let owner = Owner::of(child.id()).unwrap();
        assert!(!owner.is_gone(&me.boot));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(owner.is_gone(&me.boot));
        // The same PID with another start time is another process: ours is gone.
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(reused.is_gone(&me.boot));
        // Another machine's (or boot's) process cannot be judged from here.
        assert!(!owner.is_gone("another-boot"));
    }

    #[test]
    fn orphans_are_the_containers_of_ended_owners_here() {
        let me = Owner::current().unwrap();
        let ended = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        let elsewhere = Owner {
            boot: "another-boot".into(),
            ..ended.clone()
        };
        let (mine, gone, far) = (me.label(), ended.label(), elsewhere.label());
        let containers = [
            ("a", mine.as_str()),
            ("b", gone.as_str()),
            ("c", far.as_str()),
            ("d", "not an owner"),
        ];
        assert_eq!(orphans(containers, &me), ["b"]);
    }

    #[test]
    fn labels_that_are_not_owners_are_refused() {
        for bad in ["", "boot", "boot/12", "boot/x/3", "boot/1/2/3"] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
    }
}
