//! Real kernels: Debian's linux-source-6.1 through the `examples/tiny` workspace, cross-compiled,
//! booted in qemu, used to build an out-of-tree module, rebuilt incrementally and from scratch;
//! and its perf, static, for both arches, and 6.12's against libtraceevent from its own source.
//!
//! These take minutes each, so they are ignored by default: `cargo test -- --include-ignored`
//! runs them (.ci/run does, after `KBUILD_SETUP_REAL=1 bash .ci/setup` installed what they need).
//! They run one at a time: the machines have two cores, and each build uses both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The kernel version of the installed linux-source-6.1, as dpkg states it (`6.1.192-3` is
/// 6.1.192): the example follows the package, so whatever Debian ships today is what is built.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| package_version("linux-source-6.1"))
}

/// The upstream kernel version of an installed linux-source package.
fn package_version(package: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .expect("dpkg-query runs");
    assert!(
        out.status.success(),
        "{package} is installed (bash .ci/setup)"
    );
    let debian = String::from_utf8(out.stdout).unwrap();
    let upstream = debian.rsplit_once('-').map_or(debian.as_str(), |(u, _)| u);
    upstream.split(['+', '~']).next().unwrap().to_string()
}

/// The kernel's release string: the version and the example's localversion.
fn release() -> String {
    format!("{}-linuxkit", version())
}

/// Holds the lock that runs these tests one at a time, and when the test ends, however it
/// ends, appends its name and minutes to `real-kernel-times.log` in cargo's temp dir for tests
/// (.ci/run prints it: where CI's time goes).
struct Serial {
    _lock: MutexGuard<'static, ()>,
    started: std::time::Instant,
}

fn one_at_a_time() -> Serial {
    static LOCK: Mutex<()> = Mutex::new(());
    Serial {
        _lock: LOCK.lock().unwrap_or_else(|e| e.into_inner()),
        started: std::time::Instant::now(),
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        use std::io::Write;
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-kernel-times.log");
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let line = format!(
            "{:5.1} min  {name}{}\n",
            self.started.elapsed().as_secs_f64() / 60.0,
            if std::thread::panicking() {
                " (failed)"
            } else {
                ""
            }
        );
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// One cache for the tests that may share fetched and patched trees, under cargo's temp dir for
/// tests and emptied when this binary first uses it: every run starts cold and leaves at most one
/// cache behind, inside `target/`. (A `TempDir` in a static is never dropped: it left ~3 GB in
/// /tmp per run.)
fn shared_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-kernel-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A copy of examples/tiny (manifest and kernel/) in a temp directory, with the given cache.
struct Tiny {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Tiny {
    fn new(cache: &Path) -> Tiny {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny");
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(example.join("kernel"))
            .arg(example.join("kernel.kdl"))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        Tiny {
            dir,
            cache: cache.to_path_buf(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn kbuild(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_kbuild"))
            .arg("-C")
            .arg(self.path())
            .args(args)
            .env("KBUILD_CACHE", &self.cache)
            .output()
            .unwrap()
    }

    /// `kbuild run --format json LABEL`, asserting the exit code; returns executed names and stderr.
    fn run(&self, label: &str, code: i32) -> (Vec<String>, String) {
        self.json("run", label, code)
    }

    /// `kbuild COMMAND --format json LABEL` (`run`, `test`), asserting the exit code; returns
    /// the executed actions' names and stderr.
    fn json(&self, command: &str, label: &str, code: i32) -> (Vec<String>, String) {
        let out = self.kbuild(&[command, "--format", "json", label]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut executed: Vec<String> = report["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["outcome"] == "executed")
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        executed.sort();
        (executed, stderr)
    }

    /// The names of the actions `kbuild plan` lowers for `label`.
    fn plan_names(&self, label: &str) -> Vec<String> {
        let out = self.kbuild(&["plan", "--format", "json", label]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// `run --format json LABEL` with a remote cache, asserting success; the report.
    fn run_remote(&self, label: &str, url: &str) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_kbuild"))
            .arg("-C")
            .arg(self.path())
            .args(["run", "--format", "json", label])
            .env("KBUILD_CACHE", &self.cache)
            .env("KBUILD_REMOTE_CACHE", url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("warning: remote cache"), "{stderr}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn image(&self, target: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.path().join("out/6.1.x").join(target).join(file)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Leaves the source snapshot (`/linux.tar.xz` and its layer) out of this workspace's
    /// images: compressing a kernel tree takes a core for a minute or more beside the compile
    /// (measured here: 109 s of a 188 s cold amd64 build), and a test that does not look at
    /// the snapshot need not pay for it; the shared cache's 6.1 builds make and check it.
    fn without_snapshot(&self) {
        let manifest = self.read("kernel.kdl");
        let with = "defaults {\n    org \"linuxkit\"\n";
        assert!(manifest.contains(with), "{manifest}");
        self.write(
            "kernel.kdl",
            &manifest.replace(with, &format!("{with}    source-snapshot #false\n")),
        );
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A static /init that prints the running kernel's release and reboots (qemu -no-reboot exits).
fn initramfs(dir: &Path) -> PathBuf {
    let src = dir.join("init.c");
    std::fs::write(
        &src,
        r#"#include <string.h>
#include <sys/reboot.h>
#include <sys/utsname.h>
#include <unistd.h>
int main(void) {
    struct utsname u;
    uname(&u);
    write(1, "kbuild-init: ", 13);
    write(1, u.release, strlen(u.release));
    write(1, "\nkbuild-init-version: ", 22);
    write(1, u.version, strlen(u.version));
    write(1, "\n", 1);
    reboot(RB_AUTOBOOT);
    return 0;
}
"#,
    )
    .unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    sh(Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("init"))
        .arg(&src));
    let cpio = dir.join("init.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && echo init | cpio -o -H newc > {}",
            root.display(),
            cpio.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    cpio
}

fn boot(kernel: &Path, initrd: &Path) -> String {
    let out = Command::new("timeout")
        .args([
            "120",
            "qemu-system-x86_64",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds hello.ko against the image's kernel-dev.tar of the 6.1 kernel; returns its vermagic.
fn hello_module(kernel_dev: &[u8], dir: &Path) -> String {
    hello_module_for(kernel_dev, dir, &release())
}

/// Builds hello.ko against a kernel-dev.tar whose kernel is `release`; returns its vermagic.
fn hello_module_for(kernel_dev: &[u8], dir: &Path, release: &str) -> String {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dir.join("kernel-dev.tar"), kernel_dev).unwrap();
    sh(Command::new("tar")
        .arg("xf")
        .arg(dir.join("kernel-dev.tar"))
        .arg("-C")
        .arg(&dev));
    let module = dir.join("hello");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("hello.c"),
        "#include <linux/module.h>\nstatic int __init hello_init(void) { pr_info(\"hello\\n\"); return 0; }\nmodule_init(hello_init);\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
    std::fs::write(module.join("Makefile"), "obj-m := hello.o\n").unwrap();
    let headers = dev.join(format!("usr/src/linux-headers-{release}"));
    sh(Command::new("make")
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", module.display()))
        .args(["ARCH=x86_64", "modules"]));
    sh(Command::new("modinfo")
        .args(["-F", "vermagic"])
        .arg(module.join("hello.ko")))
    .trim()
    .to_string()
}

/// With another `ld` first on PATH (a wrapper: other bytes, the same linker behind them), the
/// built kernel's configure and compile are not reused, while fetch and patch are: Kconfig
/// writes CONFIG_LD_VERSION into .config, so binutils decide the kernel. Planned, not built: the
/// plan's keys are the ones a build would look up.
fn another_ld_is_another_kernel(ws: &Tiny) {
    let shim = tempfile::tempdir().unwrap();
    let ld = shim.path().join("ld");
    std::fs::write(
        &ld,
        "#!/bin/sh\n# another binutils\nexec /usr/bin/ld \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&ld, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shim.path().display(),
        std::env::var("PATH").unwrap()
    );
    let with_shim = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kbuild"))
            .arg("-C")
            .arg(ws.path())
            .args(args)
            .env("KBUILD_CACHE", &ws.cache)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plan: serde_json::Value =
        serde_json::from_str(&with_shim(&["plan", "--format", "json", "//6.1.x:amd64"])).unwrap();
    let state = |prefix: &str| {
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"].as_str().unwrap().starts_with(prefix))
            .map(|a| a["state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no action {prefix}"))
    };
    assert_eq!(state("fetch "), "cached");
    assert_eq!(state("patch "), "cached");
    assert_eq!(state("configure //6.1.x:amd64"), "run");
    assert_eq!(state("compile //6.1.x:amd64"), "run");
    let why = with_shim(&["why", "//6.1.x:amd64"]);
    assert!(
        why.contains("configure //6.1.x:amd64: will run: toolchain changed: ld (blake3 "),
        "{why}"
    );
    // Without the shim, the same build is all cached again.
    let (again, _) = ws.run("//6.1.x:amd64", 0);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn x86_64_builds_boots_loads_a_module_and_checks_its_config() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    // Built here, or already by another test of this binary (they share the cache).
    ws.run("//6.1.x:amd64", 0);
    assert!(ws.path().join("out/6.1.x/amd64/kernel").is_file());
    let (again, _) = ws.run("//6.1.x:amd64", 0);
    assert!(again.is_empty(), "a second run executes nothing: {again:?}");
    another_ld_is_another_kernel(&ws);

    let scratch = tempfile::tempdir().unwrap();
    let console = boot(
        &ws.path().join("out/6.1.x/amd64/kernel"),
        &initramfs(scratch.path()),
    );
    assert!(
        console.contains(&format!("Linux version {} (kbuild@kbuild)", release())),
        "{console}"
    );
    assert!(
        console.contains(&format!("kbuild-init: {}", release())),
        "{console}"
    );

    let vermagic = hello_module(&ws.image("amd64", "kernel-dev.tar"), scratch.path());
    assert!(
        vermagic.starts_with(&format!("{} ", release())),
        "vermagic `{vermagic}`"
    );

    // The resolved config as a full config passes the exact check; a wrong value fails it with
    // the option-level diff, and `kbuild config update` writes the resolved value back.
    let build = std::fs::read_dir(ws.cache.join("build"))
        .unwrap()
        .flatten()
        .find(|d| d.path().join("6.1.x/amd64/obj/.config").exists())
        .unwrap();
    let full = std::fs::read_to_string(build.path().join("6.1.x/amd64/obj/.config")).unwrap();
    ws.write("kernel/6.1.x/config-x86_64", &full);
    let (executed, stderr) = ws.run("//6.1.x:amd64", 0);
    assert!(
        !executed.contains(&"compile //6.1.x:amd64".to_string()),
        "same config, no compile: {stderr}"
    );
    let line = full
        .lines()
        .find(|l| l.starts_with("CONFIG_LOG_BUF_SHIFT="))
        .unwrap();
    ws.write(
        "kernel/6.1.x/config-x86_64",
        &full.replace(line, "CONFIG_LOG_BUF_SHIFT=99"),
    );
    let (_, stderr) = ws.run("//6.1.x:amd64", 1);
    assert!(
        stderr.contains(&format!(
            "CONFIG_LOG_BUF_SHIFT: wanted 99, resolved {}",
            &line["CONFIG_LOG_BUF_SHIFT=".len()..]
        )),
        "{stderr}"
    );
    let update = ws.kbuild(&["config", "update", "//6.1.x:amd64"]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    assert!(ws.read("kernel/6.1.x/config-x86_64").contains(line));
}

#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn kbuild_verify_rebuilds_the_real_kernel_and_it_reproduces() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    // Every action of the target again, the cache bypassed, in fresh build directories with
    // another -j and umask: the same bytes as the cached results (doc/reproducibility.md).
    let out = ws.kbuild(&["verify", "//6.1.x:amd64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for action in [
        "patch //6.1.x",
        "compile //6.1.x:amd64",
        "install //6.1.x:amd64",
    ] {
        assert!(
            stdout.contains(&format!("same     {action} (")),
            "{action}: {stdout}"
        );
    }
    assert!(
        stderr.contains(" 0 differ, 0 failed to rebuild"),
        "{stderr}"
    );
}

#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn arm64_cross_compiles_plain_and_dbg() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    ws.run("//6.1.x:arm64", 0);
    let kernel = ws.image("arm64", "kernel");
    assert_eq!(&kernel[..2], &[0x1f, 0x8b], "Image.gz is gzip");
    ws.run("//6.1.x:dbg-arm64", 0);
    let vmlinux = ws.image("dbg-arm64", "vmlinux");
    assert_eq!(&vmlinux[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([vmlinux[18], vmlinux[19]]),
        183,
        "EM_AARCH64"
    );
    let release = String::from_utf8(ws.image("dbg-arm64", "kernel-source-info")).unwrap();
    assert!(
        release.contains(&format!("KERNEL_VERSION={}", version())),
        "{release}"
    );
}

/// Where .ci/setup installs xmlschema (PyPI), the JUnit file's validator.
fn xmlschema_validate() -> String {
    let dir = std::env::var("KBUILD_LINT").unwrap_or_else(|_| "/opt/kbuild-lint/bin".into());
    format!("{dir}/xmlschema-validate")
}

/// `kbuild test` on the example: the plain kernels of all three arches and arm64's dbg boot
/// under qemu, load KUnit's example suite with its dependency and pass; the JUnit file is valid
/// and has the suite case by case; a second `kbuild test` boots nothing.
#[test]
#[ignore = "real kernel builds and qemu boots (minutes); run with --include-ignored"]
fn kbuild_test_boots_every_arch_and_a_pass_is_cached() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    let labels = [
        "//6.1.x:amd64",
        "//6.1.x:arm64",
        "//6.1.x:riscv64",
        "//6.1.x:dbg-arm64",
    ];
    let junit = ws.path().join("junit.xml");
    let mut args = vec!["test", "--junit", junit.to_str().unwrap()];
    args.extend(labels);
    let out = ws.kbuild(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("4 tests: 4 passed ("), "{stderr}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    sh(Command::new(xmlschema_validate())
        .arg("--schema")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit.xsd"))
        .arg(&junit));
    for label in labels {
        assert!(
            xml.contains(&format!(
                "<testcase classname=\"{label}.kunit.example\" name=\"example_simple_test\"/>"
            )),
            "{xml}"
        );
        assert!(
            xml.contains(&format!(
                "<testcase classname=\"{label}\" name=\"load kunit-example-test.ko\"/>"
            )),
            "{xml}"
        );
    }
    assert!(xml.contains("<skipped message=\"# SKIP this test should be skipped\"/>"));

    let mut args = vec!["test", "--format", "json"];
    args.extend(labels);
    let again = ws.kbuild(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("4 tests: 4 passed (4 cached)"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["totals"]["executed"], 0, "{}", report["totals"]);
    let plan = ws.kbuild(&["plan", "--test", "--format", "json", "//6.1.x:riscv64"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let test = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "test //6.1.x:riscv64")
        .expect("plan --test has the test");
    assert_eq!(test["state"], "cached", "{test}");

    // The SBOM of a real image passes spdx-tools' validation.
    let sbom = ws.kbuild(&["sbom", "//6.1.x:riscv64"]);
    assert!(
        sbom.status.success(),
        "{}",
        String::from_utf8_lossy(&sbom.stderr)
    );
    let file = ws.path().join("riscv64.spdx.json");
    std::fs::write(&file, &sbom.stdout).unwrap();
    let lint = std::env::var("KBUILD_LINT").unwrap_or_else(|_| "/opt/kbuild-lint/bin".into());
    sh(Command::new(format!("{lint}/pyspdxtools"))
        .arg("-i")
        .arg(&file));
    let text = String::from_utf8_lossy(&sbom.stdout);
    assert!(text.contains("pkg:deb/debian/linux-source-6.1"), "{text}");
    assert!(text.contains("CONFIG_SERIAL_OF_PLATFORM=y"));
}

#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn perf_is_static_stripped_and_runs_for_every_arch() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    // The cross-built perfs run under qemu's user-mode emulation (a static qemu needs no
    // binfmt setup).
    for (target, machine, emulator) in [
        ("perf-amd64", 62, None),
        ("perf-arm64", 183, Some("qemu-aarch64-static")),
        ("perf-riscv64", 243, Some("qemu-riscv64-static")),
    ] {
        ws.run(&format!("//6.1.x:{target}"), 0);
        let perf = ws
            .path()
            .join("out/6.1.x")
            .join(target)
            .join("usr/bin/perf");
        let bytes = std::fs::read(&perf).unwrap();
        assert_eq!(
            u16::from_le_bytes([bytes[18], bytes[19]]),
            machine,
            "{target}"
        );
        assert_eq!(
            kbuild::elf::interpreter(&perf).unwrap(),
            None,
            "{target} is static"
        );
        let sections = sh(Command::new("readelf").arg("-S").arg(&perf));
        assert!(
            !sections.contains(".symtab") && !sections.contains(".debug_info"),
            "{target} is stripped: {sections}"
        );
        let said = match emulator {
            None => sh(Command::new(&perf).arg("--version")),
            Some(qemu) => sh(Command::new(qemu).arg(&perf).arg("--version")),
        };
        assert_eq!(
            said.trim(),
            format!("perf version {}", version()),
            "{target}"
        );
    }
}

/// 6.12's perf has no libtraceevent of its own: the example builds it from the library's own
/// source (the copy in Linux 6.1's tarball, the one real tarball of it here), as LinuxKit does,
/// and perf links it statically. `perf version --build-options` says whether it is in.
#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn perf_612_links_libtraceevent_built_from_its_own_source() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    ws.run("//6.12.x:perf-amd64", 0);
    let actions = ws.plan_names("//6.12.x:perf-amd64");
    assert!(
        actions.contains(&"library //6.12.x:libtraceevent-amd64".to_string()),
        "{actions:?}"
    );
    let perf = ws.path().join("out/6.12.x/perf-amd64/usr/bin/perf");
    assert_eq!(kbuild::elf::interpreter(&perf).unwrap(), None, "static");
    let options = sh(Command::new(&perf).args(["version", "--build-options"]));
    let version = package_version("linux-source-6.12");
    assert!(
        options.starts_with(&format!("perf version {version}\n")),
        "{options}"
    );
    let traceevent = options
        .lines()
        .find(|l| l.contains("HAVE_LIBTRACEEVENT"))
        .unwrap_or_else(|| panic!("{options}"));
    assert!(traceevent.contains("[ on  ]"), "{options}");
    // The library's source is 6.1's tarball: one fetch, shared with the 6.1.x series.
    let fetch_61 = ws
        .plan_names("//6.1.x:amd64")
        .into_iter()
        .find(|n| n.starts_with("fetch "))
        .unwrap();
    assert!(fetch_61.starts_with("fetch linux-source-6.1.tar.xz@"));
    assert!(actions.contains(&fetch_61), "{actions:?}");
}

/// LinuxKit's most frequent maintenance, a stable bump, on two CI runners that share a remote
/// cache (nginx), then config changes in the kept build directory:
/// - the first runner builds examples/tiny's amd64 kernel from the previous stable release, from
///   an empty cache, and uploads it; the second, as empty, executes nothing, downloads no more
///   than its out/ holds plus a tenth, and its out/ is the first's, byte for byte;
/// - `kbuild test`'s failures ([`test_failures_say_what_failed`]) on the first runner's kernel,
///   each config an incremental compile in its kept build directory;
/// - the first runner moves the series to the installed release and its config back to the
///   example's (options the failures turned on go off: Kconfig's stamps stay behind): fetch,
///   patch and compile run again in the kept build directory, make recompiles what changed,
///   and the result is, byte for byte, what a clean build of the new release makes (the shared
///   cache's, which the other tests use too).
///
/// One kernel is compiled from scratch here; the rest are make's increments.
#[test]
#[ignore = "real kernel builds (minutes) and nginx; run with --include-ignored"]
fn runners_share_a_real_kernel_then_a_stable_bump_and_config_changes_rebuild_to_a_clean_build() {
    let _serial = one_at_a_time();
    let previous = Path::new(PREVIOUS_61);
    assert!(
        previous.exists(),
        "{PREVIOUS_61} is missing: KBUILD_SETUP_REAL=1 bash .ci/setup downloads it"
    );
    let sha = sh(Command::new("sha256sum").arg(previous));
    let sha = sha.split_whitespace().next().unwrap();
    let server = common::servers::Server::nginx();
    let caches = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (Tiny::new(caches.0.path()), Tiny::new(caches.1.path()));
    for ws in [&first, &second] {
        ws.write(
            "kernel.local.kdl",
            &format!("replace \"6.1.x\" \"file://{PREVIOUS_61}\" sha256=\"{sha}\"\n"),
        );
    }
    let built = first.run_remote("//6.1.x:amd64", &server.url);
    assert_eq!(built["totals"]["failed"], 0);
    assert!(built["totals"]["executed"].as_u64().unwrap() > 10);
    let old_release = modules_release(&first.image("amd64", "kernel.tar"));

    let pulled = second.run_remote("//6.1.x:amd64", &server.url);
    let totals = &pulled["totals"];
    assert_eq!(totals["executed"], 0, "{totals}");
    assert_eq!(totals["remote"], built["totals"]["executed"], "{totals}");
    let out = common::contents(&second.path().join("out"));
    assert_eq!(out, common::contents(&first.path().join("out")));
    let held: u64 = out.values().map(|bytes| bytes.len() as u64).sum();
    let down = totals["bytes_down"].as_u64().unwrap();
    assert!(
        down <= held + held / 10,
        "downloaded {down} bytes for an out/ of {held}"
    );

    // `kbuild test`'s failures on the first runner's kernel, each config an incremental compile.
    let config = first.read("kernel/6.1.x/config-x86_64");
    test_failures_say_what_failed(&first);

    // The stable bump, with the config back to the example's (the options the failures turned
    // on go off again), in the first runner's kept build directory.
    first.write("kernel/6.1.x/config-x86_64", &config);
    let started = std::time::Instant::now();
    std::fs::remove_file(first.path().join("kernel.local.kdl")).unwrap();
    let (executed, stderr) = first.run("//6.1.x:amd64", 0);
    let bump = started.elapsed();
    for kind in [
        "fetch",
        "patch",
        "configure",
        "check-config",
        "compile",
        "install",
        "tag",
    ] {
        assert!(
            executed.iter().any(|n| n.starts_with(&format!("{kind} "))),
            "{kind} runs again after the bump: {executed:?} {stderr}"
        );
    }
    let bumped = objects_compiled(&first, "//6.1.x:amd64");
    let clean = Tiny::new(shared_cache());
    clean.run("//6.1.x:amd64", 0);
    let cleanly = objects_compiled(&clean, "//6.1.x:amd64");
    eprintln!(
        "stable bump {old_release} -> {}: {bumped} objects compiled (a clean build: \
         {cleanly}), the rebuild took {:.1} s",
        modules_release(&first.image("amd64", "kernel.tar")),
        bump.as_secs_f64()
    );
    assert!(
        bumped > 0 && bumped <= cleanly,
        "{bumped} against {cleanly}"
    );
    // kernel-dev.tar was made in another workspace, so another build directory: no path of it
    // is recorded.
    same_images(&first, &clean, "amd64", &[]);
}

/// Asserts that `target`'s image files (and `more`) are the same bytes in both workspaces.
fn same_images(built: &Tiny, clean: &Tiny, target: &str, more: &[&str]) {
    let files = [
        "kernel",
        "System.map",
        "kernel.tar",
        "kernel-headers.tar",
        "kernel-dev.tar",
    ];
    for file in files.iter().chain(more) {
        assert!(
            built.image(target, file) == clean.image(target, file),
            "{target} {file}: the incremental build differs from a clean one"
        );
    }
}

/// The stable release before the installed linux-source-6.1, which .ci/setup takes from
/// Debian's archive (`apt-get download linux-source-6.1=VERSION`).
const PREVIOUS_61: &str = "/var/cache/kbuild-ci/linux-source-6.1-previous.tar.xz";

/// The release a kernel.tar's modules are installed for (`lib/modules/<release>/`).
fn modules_release(kernel_tar: &[u8]) -> String {
    let mut archive = tar::Archive::new(kernel_tar);
    let entries = archive.entries().unwrap();
    entries
        .filter_map(|e| {
            let path = e.ok()?.path().ok()?.into_owned();
            let path = path.strip_prefix(".").unwrap_or(&path);
            let rest = path.strip_prefix("lib/modules").ok()?;
            Some(rest.iter().next()?.to_string_lossy().into_owned())
        })
        .next()
        .unwrap_or_default()
}

/// The objects make compiled, from a compile's log (`  CC      kernel/fork.o`, `  CC [M] …`).
fn objects_compiled(ws: &Tiny, label: &str) -> usize {
    let out = ws.kbuild(&["log", label, "--action", "compile"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("CC ") && l.starts_with(' '))
        .count()
}

/// What a failed test says: a missing emulator is the machine's (125) and names its package;
/// a config without the serial console fails before booting, naming the option; a kernel that
/// panics fails with the panic, its console in the log, and is tested again next time.
/// Called with a workspace whose amd64 kernel is built: each config here is an incremental
/// compile in its kept build directory.
fn test_failures_say_what_failed(ws: &Tiny) {
    // Everything on PATH but the emulator.
    let shim = tempfile::tempdir().unwrap();
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let to = shim.path().join(&name);
            if !name.to_string_lossy().starts_with("qemu-system") && !to.exists() {
                std::os::unix::fs::symlink(entry.path(), to).unwrap();
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(ws.path())
        .args(["test", "//6.1.x:amd64"])
        .env("KBUILD_CACHE", &ws.cache)
        .env("PATH", shim.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("cannot run qemu-system-x86_64"), "{stderr}");
    assert!(
        stderr.contains("apt-get install qemu-system-x86"),
        "{stderr}"
    );

    let config = ws.read("kernel/6.1.x/config-x86_64");
    ws.write(
        "kernel/6.1.x/config-x86_64",
        &config.replace(
            "CONFIG_SERIAL_8250_CONSOLE=y",
            "# CONFIG_SERIAL_8250_CONSOLE is not set",
        ),
    );
    let (executed, stderr) = ws.json("test", "//6.1.x:amd64", 1);
    assert!(
        stderr.contains(
            "cannot be boot-tested without CONFIG_SERIAL_8250_CONSOLE (for a console on ttyS0)"
        ),
        "{stderr}"
    );
    // A config change alone: the kernel is configured and compiled again, the tree is not.
    for kind in ["configure", "check-config", "compile"] {
        assert!(
            executed.contains(&format!("{kind} //6.1.x:amd64")),
            "{kind} runs again after the change: {executed:?} {stderr}"
        );
    }
    assert!(
        !executed
            .iter()
            .any(|n| n.starts_with("fetch ") || n.starts_with("patch ")),
        "fetch and patch stay cached: {executed:?}"
    );

    // A built-in command line naming an init that is not there: no root to fall back to, so
    // the kernel panics at boot.
    ws.write(
        "kernel/6.1.x/config-x86_64",
        &format!("{config}CONFIG_CMDLINE_BOOL=y\nCONFIG_CMDLINE=\"rdinit=/nonexistent\"\n"),
    );
    for _ in 0..2 {
        let out = ws.kbuild(&["test", "//6.1.x:amd64"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the kernel panicked: Kernel panic - not syncing"),
            "{stderr}"
        );
        assert!(
            stderr.contains("1 test: 0 passed (0 cached), 1 failed"),
            "{stderr}"
        );
    }
    let log = ws.kbuild(&["log", "//6.1.x:amd64", "--action", "test"]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(text.contains("kbuild: the serial console:"), "{text}");
    assert!(text.contains("Kernel panic - not syncing"), "{text}");
}

#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn real_failures_name_their_cause() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    let fragment = ws.read("kernel/common/config-dbg");
    ws.write(
        "kernel/common/config-dbg",
        &format!("{fragment}CONFIG_VETH=y\n"),
    );
    let (_, stderr) = ws.run("//6.1.x:dbg-amd64", 1);
    assert!(
        stderr.contains("kernel/common/config-dbg:4: CONFIG_VETH=y requested, resolved absent"),
        "{stderr}"
    );
    // drivers/net/Kconfig puts VETH inside `if NETDEVICES` and `if NET_CORE`; tinyconfig has neither.
    assert!(
        stderr.contains("unmet: depends on NETDEVICES (an enclosing `if`) (off: NETDEVICES)"),
        "{stderr}"
    );
    ws.write("kernel/common/config-dbg", &fragment);

    // A requirement the config does not meet fails the check, option by option with Kconfig's
    // reason, before anything is compiled.
    let requirements = ws.read("kernel/requirements");
    ws.write(
        "kernel/requirements",
        &format!("{requirements}CONFIG_VETH=m\n"),
    );
    let (executed, stderr) = ws.run("//6.1.x:amd64", 1);
    assert!(
        stderr.contains("the resolved config misses 1 requirement(s) of kernel/requirements:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kernel/requirements:9: CONFIG_VETH=m required, resolved absent"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unmet: depends on NETDEVICES (an enclosing `if`) (off: NETDEVICES)"),
        "{stderr}"
    );
    assert!(
        !executed.iter().any(|a| a.starts_with("compile ")),
        "{executed:?}"
    );
    ws.write("kernel/requirements", &requirements);

    std::fs::create_dir_all(ws.path().join("kernel/6.1.x/patches")).unwrap();
    ws.write(
        "kernel/6.1.x/patches/0001-init-wrong-context.patch",
        "From: K <k@example.org>\nSubject: [PATCH] init: a patch for another tree\n\nSigned-off-by: K <k@example.org>\n---\n--- a/init/main.c\n+++ b/init/main.c\n@@ -1,3 +1,3 @@\n-// this line is not in 6.1\n+// nor is this one\n int x;\n int y;\n",
    );
    let (_, stderr) = ws.run("//6.1.x:amd64", 1);
    assert!(stderr.contains("patch `kernel/6.1.x/patches/0001-init-wrong-context.patch` does not apply: hunk #1 FAILED at 1 of `init/main.c`"), "{stderr}");
}

/// rt on a real 6.12 tree: the fragment's PREEMPT_RT survives the configure check, the variant's
/// own patch applies before the series' patches, the kernel boots in qemu reporting PREEMPT_RT,
/// and a module builds against its kernel-dev.tar with the rt release; a variant patch that does
/// not apply fails with the usual hunk error.
#[test]
#[ignore = "real kernel build (minutes); run with --include-ignored"]
fn rt_on_6_12_boots_preempt_rt_and_builds_a_module() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    ws.without_snapshot();
    let release = format!("{}-linuxkit-rt", package_version("linux-source-6.12"));
    let (executed, stderr) = ws.run("//6.12.x:rt-amd64", 0);
    assert!(
        executed.contains(&"compile //6.12.x:rt-amd64".to_string())
            && executed.contains(&"check-config //6.12.x:rt-amd64".to_string()),
        "{stderr}"
    );
    let out = ws.path().join("out/6.12.x/rt-amd64");
    let scratch = tempfile::tempdir().unwrap();
    let console = boot(&out.join("kernel"), &initramfs(scratch.path()));
    assert!(
        console.contains(&format!("kbuild-init: {release}")),
        "{console}"
    );
    let version = console
        .lines()
        .find_map(|l| l.strip_prefix("kbuild-init-version: "))
        .unwrap_or_else(|| panic!("{console}"));
    assert!(version.contains("PREEMPT_RT"), "uname -v: {version}");
    assert!(
        console.contains("kbuild: rt variant patch applied"),
        "{console}"
    );
    let dev = std::fs::read(out.join("kernel-dev.tar")).unwrap();
    let vermagic = hello_module_for(&dev, scratch.path(), &release);
    assert!(
        vermagic.starts_with(&format!("{release} ")) && vermagic.contains("preempt_rt"),
        "vermagic `{vermagic}`"
    );

    // A variant patch that no longer applies stops at the patch action, naming file and hunk.
    let patch =
        "kernel/6.12.x-rt/patches/0001-init-say-that-the-rt-variant-s-patch-is-applied.patch";
    ws.write(
        patch,
        &ws.read(patch)
            .replace("\tboot_cpu_init();", "\tboot_cpu_init_gone();"),
    );
    let (_, stderr) = ws.run("//6.12.x:rt-amd64", 1);
    assert!(
        stderr.contains(&format!(
            "patch `{patch}` does not apply: hunk #1 FAILED at 893 of `init/main.c`"
        )),
        "{stderr}"
    );
}

/// examples/tiny's amd64 kernel with its compile and install executed by a `kbuild worker` in
/// the builder container, through BuildGrid on PostgreSQL, from an empty cache: the kernel, its
/// modules and kernel-dev.tar are the same bytes as the host build's, and the install, which
/// is the compile's remote action, is the cluster's action-cache hit: nothing built again,
/// nothing sent. The client runs with the Docker executor, so what stays here (configure, make
/// olddefconfig on the real tree) runs in the builder container too: a real kernel built in
/// `kbuild/builder:bookworm` is the host's, byte for byte (doc/docker.md).
#[test]
#[ignore = "real kernel build on a remote-execution cluster (minutes); run with --include-ignored"]
fn x86_64_compiled_by_a_remote_worker_equals_the_host_build() {
    let _serial = one_at_a_time();
    let ws = Tiny::new(shared_cache());
    ws.run("//6.1.x:amd64", 0);
    let files = ["kernel", "kernel.tar", "kernel-dev.tar", "System.map"];
    let host: Vec<Vec<u8>> = files.iter().map(|f| ws.image("amd64", f)).collect();

    let postgres = common::servers::Server::postgres();
    let server = common::servers::Server::buildgrid_execution(&postgres);
    let scratch = tempfile::tempdir().unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .args(["worker", "--server", &server.url, "--executor", "docker"])
        .args(["--image", "kbuild/builder:bookworm", "--dir"])
        .arg(scratch.path().join("worker"))
        .stderr(std::fs::File::create(scratch.path().join("worker.log")).unwrap())
        .spawn()
        .unwrap();
    let remote = Tiny::new(&scratch.path().join("cache"));
    remote.without_snapshot();
    let out = remote.kbuild(&[
        "--executor",
        "docker",
        "--remote-executor",
        &server.url,
        "--remote-exec",
        "always",
        "run",
        "--format",
        "json",
        "//6.1.x:amd64",
    ]);
    let _ = worker.kill();
    let _ = worker.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let configure = (report["actions"].as_array().unwrap().iter())
        .find(|a| a["name"] == "configure //6.1.x:amd64")
        .unwrap();
    assert_eq!(configure["outcome"], "executed", "{configure}");
    let log_of = |kind: &str| {
        let log = remote.kbuild(&[
            "--executor",
            "docker",
            "log",
            "//6.1.x:amd64",
            "--action",
            kind,
        ]);
        String::from_utf8_lossy(&log.stdout).into_owned()
    };
    let log = log_of("configure");
    assert!(
        log.contains("olddefconfig") && !log.contains("ran remotely"),
        "configure ran here, in the container: {log}"
    );
    for (kind, limit) in [("compile", u64::MAX), ("install", 1 << 20)] {
        let log = log_of(kind);
        let sent = log
            .lines()
            .find_map(|l| l.split("; sent ").nth(1))
            .unwrap_or_else(|| panic!("{kind} ran remotely: {log}"));
        let bytes: u64 = sent.split(' ').next().unwrap().parse().unwrap();
        eprintln!("{kind}: sent {sent}");
        assert!(bytes < limit, "{kind} sent {bytes} bytes");
        if kind == "install" {
            assert!(log.contains("(cached); sent 0 bytes"), "{log}");
        }
    }
    for (file, host) in files.iter().zip(host) {
        assert!(
            remote.image("amd64", file) == host,
            "{file} differs from the host build"
        );
    }
}
