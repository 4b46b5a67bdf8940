//! Real servers for the tests, on loopback and free ports, each killed when dropped: Debian's
//! docker-registry (OCI distribution), nginx with WebDAV `PUT` (the HTTP cache protocol) and
//! BuildGrid (REAPI over gRPC). `KBUILD_SETUP_REAL=1 bash .ci/setup` installs all three.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::wait_until;

/// A docker-registry process serving from a temp directory, killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        let data = dir.path().join("data");
        let (child, port) = start_listening("docker-registry", |port| {
            std::fs::write(&config, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", data.display())).unwrap();
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .expect("docker-registry (apt install docker-registry)")
        });
        let host = format!("127.0.0.1:{port}");
        let registry = Registry {
            child,
            host,
            _dir: dir,
        };
        wait_until(
            Instant::now() + Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                ureq::get(&format!("http://{}/v2/", registry.host))
                    .call()
                    .is_ok()
            },
            || "the registry did not start".into(),
        );
        registry
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let accept =
            "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json";
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut reply = agent
            .get(&format!("http://{}{path}", self.host))
            .header("Accept", accept)
            .call()
            .unwrap();
        (
            reply.status().as_u16(),
            reply.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    pub fn manifest(&self, repo: &str, reference: &str) -> serde_json::Value {
        let (status, body) = self.get(&format!("/v2/{repo}/manifests/{reference}"));
        assert_eq!(status, 200, "{repo}:{reference}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts a server on a free port (`spawn` starts it on the port it is given) and waits until
/// it listens. A port found free can be taken by another test's server before this one binds
/// it, and a connect would then reach that other server: the port counts only once a socket of
/// the child's own process group listens on it, and a child that lost the port gets another.
fn start_listening(what: &str, mut spawn: impl FnMut(u16) -> Child) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if listens(child.id(), port) {
                return (child, port);
            }
            if Instant::now() > deadline {
                // SAFETY: a plain kill of the server's own process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                panic!("{what} does not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("{what} exited at its start five times, on five ports")
}

/// Whether a process of process group `group` has a socket listening on 127.0.0.1:`port`
/// (the inodes of /proc/net/tcp's listening sockets, found among the group's open files).
fn listens(group: u32, port: u16) -> bool {
    // gRPC's servers listen on an IPv6 socket with 127.0.0.1 v4-mapped: in tcp6.
    let tcp = ["/proc/net/tcp", "/proc/net/tcp6"]
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .concat();
    let sockets: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?;
            (local_port == port && f.get(3) == Some(&"0A")).then(|| format!("socket:[{inode}]"))
        })
        .collect();
    if sockets.is_empty() {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // After the command's closing parenthesis: state, parent, process group.
        let pgrp = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
        pgrp == Some(group)
            && std::fs::read_dir(p.path().join("fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| sockets.iter().any(|s| l.as_os_str() == s.as_str()))
                })
            })
    })
}

/// Runs a set-up command to its end; a failure stops the test with its stderr.
fn succeed(command: &mut Command, what: &str) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// BuildGrid's command (`KBUILD_BGD`, else where .ci/setup installs it).
pub fn bgd() -> String {
    std::env::var("KBUILD_BGD").unwrap_or_else(|_| "/opt/kbuild-buildgrid/bin/bgd".to_string())
}

/// Starts `bgd server` on the config `conf`, written to `dir/bgd.yml`, logging to
/// `dir/bgd.log`, in a process group of its own.
fn start_bgd(dir: &std::path::Path, conf: &str) -> Child {
    std::fs::write(dir.join("bgd.yml"), conf).unwrap();
    let log = std::fs::File::create(dir.join("bgd.log")).unwrap();
    Command::new(bgd())
        .args(["server", "start"])
        .arg(dir.join("bgd.yml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (KBUILD_SETUP_REAL=1 bash .ci/setup installs BuildGrid)",
                bgd()
            )
        })
}

/// A server process of the test, killed with its process group when dropped.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: a plain kill of the server's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Server {
    /// nginx serving `/ac/` and `/cas/` from a directory, `PUT` allowed: the HTTP protocol.
    pub fn nginx() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let (child, port) = start_listening("nginx", |port| {
            let conf = format!(
                "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  client_max_body_size 0;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {d}/store;\n\
                 location / {{ dav_methods PUT DELETE; create_full_put_path on; }}\n  }}\n}}\n"
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            Command::new("nginx")
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .process_group(0)
                .spawn()
                .expect("nginx is installed (KBUILD_SETUP_REAL=1 bash .ci/setup)")
        });
        Server {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// BuildGrid with a disk CAS and an action cache: REAPI over gRPC, SHA-256.
    pub fn buildgrid() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cas = dir.path().join("cas");
        std::fs::create_dir_all(&cas).unwrap();
        let (child, port) = start_listening("BuildGrid", |port| {
            let conf = format!(
                "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
                 authorization:\n  method: none\n\
                 storages:\n  - !disk-storage &main-storage\n    path: {}\n\
                 caches:\n  - !lru-action-cache &main-action\n    storage: *main-storage\n    max-cached-refs: 1024\n    allow-updates: true\n    cache-failed-actions: true\n\
                 instances:\n  - name: \"\"\n    services:\n      - !action-cache\n        cache: *main-action\n      - !cas\n        storage: *main-storage\n      - !bytestream\n        storage: *main-storage\n",
                cas.display()
            );
            start_bgd(dir.path(), &conf)
        });
        Server {
            child,
            dir,
            url: format!("grpc://127.0.0.1:{port}"),
        }
    }

    /// PostgreSQL 15 from Debian on loopback, a throwaway cluster with the database `bgd` of
    /// the role `bgd`, BuildGrid's scheduler's. As root it runs as the `postgres` user (the
    /// server refuses root); `url` is the connection string. UTF-8: on a SQL_ASCII cluster
    /// (what the C locale gives) psycopg reads text as bytes and BuildGrid fails.
    pub fn postgres() -> Server {
        let bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
        assert!(
            bin.exists(),
            "PostgreSQL 15 is missing: KBUILD_SETUP_REAL=1 bash .ci/setup installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = unsafe { libc::getuid() } == 0;
        let as_owner = |program: &str| {
            let mut cmd = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            cmd.env("LC_ALL", "C");
            cmd
        };
        if root {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let data = dir.path().join("data");
        succeed(
            as_owner("initdb").arg("-D").arg(&data).args([
                "-U",
                "bgd",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]),
            "initdb",
        );
        let (child, port) = start_listening("PostgreSQL", |port| {
            let log =
                std::fs::File::create(dir.path().join(format!("postgres-{port}.log"))).unwrap();
            as_owner("postgres")
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "max_connections=200"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap()
        });
        let url = format!("postgresql://bgd@127.0.0.1:{port}/bgd");
        succeed(
            as_owner("createdb").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "bgd",
                "bgd",
            ]),
            "createdb",
        );
        succeed(
            Command::new(bgd()).args(["migrate", "apply", &url]),
            "bgd migrate apply",
        );
        Server { child, dir, url }
    }

    /// BuildGrid with remote execution: the Execution and Bots services on its SQL scheduler
    /// (PostgreSQL at `postgres`), CAS, ByteStream and an action cache. Bots match on
    /// `OSFamily`, `ISA` and `container-image`; a bot unheard of for 20 s is reaped and its
    /// leases go to another. Its job assigner looks every 0.05–0.1 s: BuildGrid's default (every
    /// 1 s plus up to 1 s of jitter) leaves each action queued 1.5 s on average.
    pub fn buildgrid_execution(postgres: &Server) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cas = dir.path().join("cas");
        std::fs::create_dir_all(&cas).unwrap();
        let (child, port) = start_listening("BuildGrid", |port| {
            let conf = format!(
                "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
                 authorization:\n  method: none\n\
                 connections:\n  - !sql-connection &sql\n    connection-string: {}\n    pool-size: 5\n    max-overflow: 20\n\
                 storages:\n  - !disk-storage &storage\n    path: {}\n\
                 caches:\n  - !lru-action-cache &cache\n    storage: *storage\n    max-cached-refs: 100000\n    allow-updates: true\n    cache-failed-actions: false\n\
                 schedulers:\n  - !sql-scheduler &scheduler\n    sql: *sql\n    storage: *storage\n    action-cache: *cache\n\
                 \x20   poll-interval: 0.1\n    bot-poll-interval: 0.1\n    bot-session-keepalive-timeout: 20\n    session-expiry-timer-interval: 2\n\
                 \x20   assigners:\n      - !priority-age-assigner\n        interval: 0.05\n        jitter-factor: 0.05\n\
                 \x20   property-set: !dynamic-property-set\n      match-property-keys: [\"OSFamily\", \"ISA\", \"container-image\"]\n\
                 instances:\n  - name: \"\"\n    services:\n      - !action-cache\n        cache: *cache\n      - !execution\n        scheduler: *scheduler\n\
                 \x20     - !cas\n        storage: *storage\n      - !bytestream\n        storage: *storage\n",
                postgres.url,
                cas.display()
            );
            start_bgd(dir.path(), &conf)
        });
        Server {
            child,
            dir,
            url: format!("grpc://127.0.0.1:{port}"),
        }
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    /// Kills the server now (a test of a server that goes away).
    pub fn kill(&mut self) {
        // SAFETY: a plain kill of the server's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Where the server keeps blobs (and, for nginx, action results).
    pub fn storage(&self) -> PathBuf {
        if self.url.starts_with("http") {
            self.dir.path().join("store")
        } else {
            self.dir.path().join("cas")
        }
    }
}
