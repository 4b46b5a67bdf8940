//! Test workspaces: a fake kernel tarball, a manifest, configs and patches in a temp directory,
//! and the real kbuild binary run against them.
#![allow(dead_code)]

pub mod reapi;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const FULL_CONFIG: &str = include_str!("../fixtures/fake-kernel.config");

pub const DBG_FRAGMENT: &str = "CONFIG_DEBUG_KERNEL=y\nCONFIG_DEBUG_INFO=y\n";

pub const PATCH: &str = include_str!("../fixtures/0001-init-say-hello.patch");

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-kernel")
}

/// Packs the fake kernel as `linux-<version>.tar` and returns its path and sha256.
pub fn make_tarball(dir: &Path, version: &str) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let tar = dir.join(format!("linux-{version}.tar"));
    kbuild::archive::write_tar(&fixture(), &tar, &format!("linux-{version}"), 1_700_000_000)
        .unwrap();
    let sha = kbuild::digest::Sha256::of_file(&tar).unwrap().to_string();
    (tar, sha)
}

pub struct Ws {
    pub dir: tempfile::TempDir,
    pub cache: PathBuf,
}

impl Ws {
    /// One series (6.6.x: amd64 and arm64, plain and dbg, perf), with one patch.
    pub fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let ws = Ws {
            cache: dir.path().join("cache"),
            dir,
        };
        let (tar, sha) = make_tarball(&ws.path().join("sources"), "6.6.71");
        ws.write("kernel/6.6.x/config-x86_64", FULL_CONFIG);
        ws.write(
            "kernel/6.6.x/config-aarch64",
            &FULL_CONFIG.replace("Linux/x86_64", "Linux/arm64"),
        );
        ws.write("kernel/common/config-dbg", DBG_FRAGMENT);
        ws.write("kernel/6.6.x/patches/0001-init-say-hello.patch", PATCH);
        // Relative to the workspace: two workspaces describe the very same source.
        assert!(tar.ends_with("sources/linux-6.6.71.tar"));
        ws.write(
            "kernel.kdl",
            &manifest("file://sources/linux-6.6.71.tar", &sha, "6.6.71"),
        );
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Rewrites a file with `from` replaced by `to`; the replacement must happen.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "`{from}` not in {rel}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Sets CONFIG_NR_CPUS in amd64's committed config: the next run configures and compiles
    /// amd64 again.
    pub fn set_amd64_cpus(&self, cpus: u32) {
        let text = self.read("kernel/6.6.x/config-x86_64");
        let line = text
            .lines()
            .find(|l| l.starts_with("CONFIG_NR_CPUS="))
            .unwrap();
        self.edit(
            "kernel/6.6.x/config-x86_64",
            line,
            &format!("CONFIG_NR_CPUS={cpus}"),
        );
    }

    /// The `source` line of kernel.kdl, as written.
    pub fn source_line(&self) -> String {
        let text = self.read("kernel.kdl");
        text.lines()
            .find(|l| l.contains("source \""))
            .expect("kernel.kdl has a source")
            .to_string()
    }

    /// The sha256 that kernel.kdl pins its source to.
    pub fn source_sha(&self) -> String {
        let line = self.source_line();
        let sha = line
            .split("sha256=\"")
            .nth(1)
            .expect("the source is pinned");
        sha.trim_end_matches('"').to_string()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbuild"));
        cmd.arg("-C")
            .arg(self.path())
            .args(args)
            .env("KBUILD_CACHE", &self.cache)
            .env("NO_COLOR", "1");
        cmd
    }

    pub fn kbuild(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `kbuild run --format json` and returns the report; panics unless the exit code is `code`.
    pub fn run(&self, labels: &[&str], code: i32) -> Report {
        let mut args = vec!["run", "--format", "json"];
        args.extend(labels);
        report(self.kbuild(&args), code)
    }

    /// The entry of `out/index.json` that the image layout names `reference`.
    pub fn layout_entry(&self, reference: &str) -> serde_json::Value {
        let layout: serde_json::Value = serde_json::from_str(&self.read("out/index.json")).unwrap();
        layout["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
            .unwrap_or_else(|| panic!("{reference} is not in the layout"))
            .clone()
    }

    /// A JSON blob of the image layout (manifest, index, config) by its `sha256:` digest.
    pub fn layout_blob(&self, digest: &str) -> serde_json::Value {
        let hex = digest.trim_start_matches("sha256:");
        serde_json::from_str(&self.read(&format!("out/blobs/sha256/{hex}"))).unwrap()
    }

    pub fn why(&self, label: &str) -> String {
        let out = self.kbuild(&["why", label]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The content hash of one target in `kbuild tags --format json`: the end of its `<ver>-<hash>`
/// index reference.
pub fn content_hash(target: &serde_json::Value) -> String {
    target["index"][1]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string()
}

pub fn manifest(url: &str, sha: &str, version: &str) -> String {
    format!(
        r#"// A test workspace.
defaults {{
    org "linuxkit"
    arches "x86_64" "aarch64"
    builder "linuxkit/alpine:1111111111111111111111111111111111111111"
}}

variant "dbg" {{
    fragment "kernel/common/config-dbg"
    force-off "CONFIG_PANIC_ON_OOPS"
    localversion "-dbg"
    outputs "vmlinux"
    exact-config #false
}}

tool "perf" {{
    dir "tools/perf"
    binary "perf"
}}

series "6.6.x" {{
    version "{version}"
    source "{url}" sha256="{sha}"
    variants "dbg"
    tools "perf"
    source-date-epoch 1700000000
}}
"#
    )
}

pub struct Report {
    pub json: serde_json::Value,
    pub stderr: String,
}

/// The report of a finished `kbuild run --format json`; panics unless the exit code is `code`.
pub fn report(out: Output, code: i32) -> Report {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Report {
        json: serde_json::from_slice(&out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Report {
    pub fn names(&self, outcome: &str) -> Vec<String> {
        let mut names: Vec<String> = self.json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["outcome"] == outcome)
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    pub fn executed(&self) -> Vec<String> {
        self.names("executed")
    }

    pub fn failed(&self) -> Vec<String> {
        self.names("failed")
    }

    pub fn total(&self, what: &str) -> u64 {
        self.json["totals"][what].as_u64().unwrap()
    }
}

/// Polls `done` every `every` until it holds; panics with `what()` once `deadline` has passed.
pub fn wait_until(
    deadline: Instant,
    every: Duration,
    mut done: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(every);
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving `files` (path → bytes), 404 otherwise. It
/// answers at most `requests` requests, then stops; it stops after 60 s in any case.
pub fn serve(files: Vec<(String, Vec<u8>)>, requests: usize) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut served = 0;
        while served < requests && std::time::Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
            served += 1;
        }
    });
    port
}

/// Every file reachable under `out/`, links followed, by path: what a user or a push would read
/// (kbuild's own `.kbuild-*` bookkeeping left out).
pub fn contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            let name = child.to_string_lossy().into_owned();
            if name.starts_with(".kbuild-") {
                continue;
            }
            let meta =
                std::fs::metadata(entry.path()).unwrap_or_else(|e| panic!("{name} dangles: {e}"));
            if meta.is_dir() {
                stack.push(child);
            } else {
                files.insert(name, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
