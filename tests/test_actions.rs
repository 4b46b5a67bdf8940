//! The boot test's caching and keying rules, on the fake kernel tree with a stand-in for qemu
//! (a script that answers on the "serial console" as a kernel that passes would, or panics,
//! and notes each boot): a pass is cached; the test runs again when the kernel, the
//! emulator, the compiler or the initramfs's modules change, not when another target does; a
//! failure is never cached. The real boots are tests/real_kernel.rs's.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{FULL_CONFIG, Ws, fixture, manifest};

/// What the boot test needs of a config, which the fake Kconfig does not know of by itself.
const BOOT_OPTIONS: &[&str] = &[
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_BINFMT_ELF",
    "CONFIG_TTY",
    "CONFIG_PROC_FS",
    "CONFIG_SYSFS",
    "CONFIG_SERIAL_8250",
    "CONFIG_SERIAL_8250_CONSOLE",
];

/// A stand-in for qemu-system-x86_64: writes what /init would say for the kernel's release
/// (read beside the `-kernel` file, in the compile's output) and each module of the
/// initramfs's load list into the `-serial file:` path,
/// and appends a line to `boots` beside itself; a file `panic` there makes the kernel panic.
/// (Commands see no environment of kbuild's caller: the files say it.)
const FAKE_QEMU: &str = r#"#!/bin/sh
for arg; do
    case "$prev" in
        -serial) console=${arg#file:} ;;
        -kernel) kernel=$arg ;;
        -initrd) initrd=$arg ;;
    esac
    prev=$arg
done
release=$(cat "$(dirname "$kernel")/kernel.release")
here=$(dirname "$0")
echo boot >> "$here/boots"
if [ -e "$here/panic" ]; then
    printf 'Linux version %s\nKernel panic - not syncing: fake\n' "$release" > "$console"
    exit 0
fi
{
    printf 'Linux version %s\nkbuild-test: release %s\nkbuild-test: mount-proc ok\nkbuild-test: mount-sys ok\n' \
        "$release" "$release"
    cpio -i --quiet --to-stdout kbuild-test/load < "$initrd" | while read -r module; do
        printf 'kbuild-test: module %s ok\n' "$module"
    done
    printf 'kbuild-test: done \n'
} > "$console"
"#;

struct Bench {
    ws: Ws,
    bin: tempfile::TempDir,
    boots: PathBuf,
}

impl Bench {
    /// The fake workspace on a fake kernel whose Kconfig knows the boot options (on by
    /// default), with configs that have them, and the stand-in qemu first on PATH.
    fn new() -> Bench {
        let ws = Ws::new();
        let kernel = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(fixture())
            .arg(kernel.path().join("k"))
            .status()
            .unwrap();
        assert!(status.success());
        let kconfig = kernel.path().join("k/Kconfig.fake");
        let mut symbols = std::fs::read_to_string(&kconfig).unwrap();
        let mut lines = String::new();
        for option in BOOT_OPTIONS {
            symbols.push_str(&format!("{option}|y|\n"));
            lines.push_str(&format!("{option}=y\n"));
        }
        std::fs::write(&kconfig, symbols).unwrap();
        let tar = ws.path().join("sources/linux-6.6.71.tar");
        kbuild::archive::write_tar(
            &kernel.path().join("k"),
            &tar,
            "linux-6.6.71",
            1_700_000_000,
        )
        .unwrap();
        let sha = kbuild::digest::Sha256::of_file(&tar).unwrap().to_string();
        ws.write(
            "kernel.kdl",
            &manifest("file://sources/linux-6.6.71.tar", &sha, "6.6.71"),
        );
        ws.write(
            "kernel/6.6.x/config-x86_64",
            &format!("{FULL_CONFIG}{lines}"),
        );
        let bin = tempfile::tempdir().unwrap();
        let boots = bin.path().join("boots");
        let bench = Bench { ws, bin, boots };
        bench.set_qemu(FAKE_QEMU);
        bench
    }

    fn set_qemu(&self, script: &str) {
        let qemu = self.bin.path().join("qemu-system-x86_64");
        std::fs::write(&qemu, script).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Puts a wrapper of the host's gcc first on PATH: other bytes, the same compiler.
    fn wrap_gcc(&self) {
        let gcc = self.bin.path().join("gcc");
        std::fs::write(&gcc, "#!/bin/sh\n# another gcc\nexec /usr/bin/gcc \"$@\"\n").unwrap();
        std::fs::set_permissions(&gcc, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn boots(&self) -> usize {
        std::fs::read_to_string(&self.boots)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// `kbuild test LABEL`, with the stand-in first on PATH: the exit code and stderr.
    fn test(&self, label: &str, panic: bool) -> (i32, String) {
        let flag = self.bin.path().join("panic");
        if panic {
            std::fs::write(&flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&flag);
        }
        let out = self.kbuild(&["test", label]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kbuild with the stand-in first on PATH, as the keys of these tests have it.
    fn kbuild(&self, args: &[&str]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        self.ws.command(args).env("PATH", path).output().unwrap()
    }

    fn path(&self) -> &Path {
        self.ws.path()
    }
}

#[test]
fn a_pass_is_cached_and_tested_again_only_when_what_it_ran_changes() {
    let bench = Bench::new();
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 test: 1 passed (0 cached)"), "{stderr}");
    assert_eq!(bench.boots(), 1);

    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 test: 1 passed (1 cached)"), "{stderr}");
    assert!(
        stderr.contains("(nothing changed)"),
        "a null test run: {stderr}"
    );
    assert_eq!(bench.boots(), 1, "a passed test boots nothing again");
    // With a JUnit file, every result is read back: the full path, still nothing booted.
    let junit = bench.path().join("junit.xml");
    let out = bench.kbuild(&["test", "--junit", junit.to_str().unwrap(), "//6.6.x:amd64"]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("name=\"boot\"")
    );
    assert_eq!(bench.boots(), 1);

    // Another target's config, and the dbg fragment amd64 does not use: still cached.
    bench.ws.edit(
        "kernel/6.6.x/config-aarch64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=8",
    );
    bench
        .ws
        .write("kernel/common/config-dbg", "CONFIG_DEBUG_KERNEL=y\n");
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 1), "{stderr}");

    // The kernel changes: tested again.
    bench.ws.set_amd64_cpus(32);
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 2), "{stderr}");

    // Another qemu (by content): tested again. Another gcc (which builds the kernel as well
    // as /init here): tested again.
    bench.set_qemu(&format!("{FAKE_QEMU}# another qemu\n"));
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 3), "{stderr}");
    bench.wrap_gcc();
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 4), "{stderr}");
    let why = bench.kbuild(&["why", "--test", "//6.6.x:amd64"]);
    let text = String::from_utf8_lossy(&why.stdout);
    assert!(
        text.contains(
            "test //6.6.x:amd64: up to date; last ran because toolchain changed: gcc (blake3 "
        ),
        "{text}"
    );

    // Another initramfs: a module to load (the fake install's fake.ko), which /init reports.
    let kdl = bench.ws.read("kernel.kdl");
    bench.ws.write(
        "kernel.kdl",
        &kdl.replacen(
            "    org \"linuxkit\"\n",
            "    org \"linuxkit\"\n    test-modules \"fake\"\n",
            1,
        ),
    );
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 5), "{stderr}");

    // `kbuild run` builds without testing; its plan has no test.
    let run = bench.ws.run(&["//6.6.x:amd64"], 0);
    let actions = run.json["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    assert!(
        !actions
            .iter()
            .any(|a| a["name"].as_str().unwrap().starts_with("test "))
    );
    assert!(bench.path().join("out/6.6.x/amd64/kernel").exists());
}

#[test]
fn a_failed_test_is_never_cached_and_exits_1() {
    let bench = Bench::new();
    for boots in 1..=2 {
        let (code, stderr) = bench.test("//6.6.x:amd64", true);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("the kernel panicked: Kernel panic - not syncing: fake"),
            "{stderr}"
        );
        assert_eq!(bench.boots(), boots, "a failure boots again");
    }
    let log = bench.kbuild(&["log", "//6.6.x:amd64", "--action", "test"]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        text.contains("Kernel panic - not syncing: fake"),
        "{text}{}",
        String::from_utf8_lossy(&log.stderr)
    );
    // Then it passes, and that is cached.
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!((code, bench.boots()), (0, 3), "{stderr}");
}

/// A config without what the boot needs fails before any boot, naming the option.
#[test]
fn a_config_without_the_serial_console_fails_before_booting() {
    let bench = Bench::new();
    bench.ws.edit(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_SERIAL_8250_CONSOLE=y",
        "# CONFIG_SERIAL_8250_CONSOLE is not set",
    );
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "cannot be boot-tested without CONFIG_SERIAL_8250_CONSOLE (for a console on ttyS0)"
        ),
        "{stderr}"
    );
    assert_eq!(bench.boots(), 0);

    // A test module the kernel does not build as a module: a failed test, before booting.
    bench.ws.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_SERIAL_8250_CONSOLE is not set",
        "CONFIG_SERIAL_8250_CONSOLE=y",
    );
    let kdl = bench.ws.read("kernel.kdl");
    bench.ws.write(
        "kernel.kdl",
        &kdl.replacen(
            "    org \"linuxkit\"\n",
            "    org \"linuxkit\"\n    test-modules \"nothere\"\n",
            1,
        ),
    );
    let (code, stderr) = bench.test("//6.6.x:amd64", false);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("modules: the kernel does not build nothere as a module"),
        "{stderr}"
    );
    assert_eq!(bench.boots(), 0);
}
