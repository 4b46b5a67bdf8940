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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n", dir.path().join("data").display())).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (apt install docker-registry)");
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

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    wait_until(
        Instant::now() + Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            assert!(child.try_wait().unwrap().is_none(), "{what} exited");
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
        || format!("{what} does not listen on {port}"),
    );
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
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let conf = format!(
            "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  client_max_body_size 0;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/store;\n\
             location / {{ dav_methods PUT DELETE; create_full_put_path on; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .process_group(0)
            .spawn()
            .expect("nginx is installed (KBUILD_SETUP_REAL=1 bash .ci/setup)");
        wait_for_port(port, "nginx", &mut child);
        Server {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// BuildGrid with a disk CAS and an action cache: REAPI over gRPC, SHA-256.
    pub fn buildgrid() -> Server {
        let bgd = std::env::var("KBUILD_BGD")
            .unwrap_or_else(|_| "/opt/kbuild-buildgrid/bin/bgd".to_string());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cas = dir.path().join("cas");
        std::fs::create_dir_all(&cas).unwrap();
        let conf = format!(
            "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
             authorization:\n  method: none\n\
             storages:\n  - !disk-storage &main-storage\n    path: {}\n\
             caches:\n  - !lru-action-cache &main-action\n    storage: *main-storage\n    max-cached-refs: 1024\n    allow-updates: true\n    cache-failed-actions: true\n\
             instances:\n  - name: \"\"\n    services:\n      - !action-cache\n        cache: *main-action\n      - !cas\n        storage: *main-storage\n      - !bytestream\n        storage: *main-storage\n",
            cas.display()
        );
        std::fs::write(dir.path().join("bgd.yml"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("bgd.log")).unwrap();
        let mut child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(dir.path().join("bgd.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bgd}: {e} (KBUILD_SETUP_REAL=1 bash .ci/setup installs BuildGrid)")
            });
        wait_for_port(port, "BuildGrid", &mut child);
        Server {
            child,
            dir,
            url: format!("grpc://127.0.0.1:{port}"),
        }
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
