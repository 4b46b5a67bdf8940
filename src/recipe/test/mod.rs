//! Test: boots one target's kernel under qemu with an initramfs kbuild makes, and judges what
//! the serial console shows: the release, /proc and /sys, each module loaded with its
//! dependencies, KUnit's suites, no panic. Before booting, the resolved config must have what
//! the test needs, so a kernel that cannot speak on the console fails with the option's name
//! rather than with silence and a timeout.
//!
//! A pass is the action's output (`result.json` and `console.log`), cached like any other: the
//! same kernel, initramfs, qemu and firmware pass again without booting. A failure is an error
//! of kind [`RecipeError::TestFailed`] with the console in the log, never an output; a machine
//! that cannot run the test (no qemu, a crash of qemu before the kernel spoke) is any other
//! error, which `kbuild test` tells apart for `git bisect run`.

mod init;
mod initramfs;

use std::io::Write as _;

use super::{Ctx, RecipeError, io};
use crate::action::{Role, TestSpec};
use crate::exec::{ExecError, Invocation};
use crate::kconfig;
use crate::machine as qemu;
use crate::verdict::{CONSOLE, RESULT, Verdict};

pub fn test(ctx: &Ctx, spec: &TestSpec) -> Result<(), RecipeError> {
    let mut verdict = Verdict::default();
    config_check(ctx, spec, &mut verdict)?;
    if !verdict.passed() {
        return finish(ctx, &verdict, "");
    }
    let release = std::fs::read_to_string(ctx.dep(Role::Kernel).join("kernel.release"))
        .map_err(io("reading kernel.release"))?
        .trim()
        .to_string();
    let initrd = ctx.work.join("initramfs.cpio");
    let init = initramfs::compile_init(ctx, &spec.cc)?;
    let kernel_tar = ctx.dep(Role::Modules).join("kernel.tar");
    let found = initramfs::modules(&kernel_tar, &release, &spec.modules)?;
    if !found.missing.is_empty() {
        verdict.check(
            "modules",
            false,
            format!(
                "the kernel does not build {} as a module (set the option to m, or change \
                 `test-modules` in kernel.kdl)",
                found.missing.join(", ")
            ),
        );
        return finish(ctx, &verdict, "");
    }
    let modules = found.files;
    // Every mtime 0: nothing in the guest reads one, and the bytes stay the same.
    let archive = initramfs::archive(init, &modules, 0).map_err(io("making the initramfs"))?;
    std::fs::write(&initrd, archive).map_err(io("writing the initramfs"))?;
    let console = boot(ctx, spec, &initrd)?;
    judge(&console, &release, &modules, &mut verdict);
    std::fs::write(ctx.out.join(CONSOLE), &console).map_err(io("saving the console log"))?;
    finish(ctx, &verdict, &console)
}

/// The options the boot needs, from the resolved config; each one off is a failed check.
fn config_check(ctx: &Ctx, spec: &TestSpec, verdict: &mut Verdict) -> Result<(), RecipeError> {
    let text = std::fs::read_to_string(ctx.dep(Role::Config).join("config"))
        .map_err(io("reading the resolved config"))?;
    let config = kconfig::parse(&text);
    let machine = qemu::machine(spec.arch);
    let needs = qemu::common_needs(!spec.modules.is_empty());
    let off: Vec<String> = (machine.needs.iter().chain(&needs))
        .filter(|(option, _)| {
            !matches!(
                config.settings.get(*option).map(|s| s.value.as_str()),
                Some("y")
            )
        })
        .map(|(option, why)| format!("{option} (for {why})"))
        .collect();
    if off.is_empty() {
        verdict.check(
            "config",
            true,
            "every option the boot test needs is built in",
        );
    } else {
        verdict.check(
            "config",
            false,
            format!(
                "the kernel cannot be boot-tested without {}",
                off.join(", ")
            ),
        );
    }
    Ok(())
}

/// Runs qemu until the guest reboots (`-no-reboot` exits) or the timeout; the console's text.
fn boot(ctx: &Ctx, spec: &TestSpec, initrd: &std::path::Path) -> Result<String, RecipeError> {
    let machine = qemu::machine(spec.arch);
    let mut kernel = ctx.dep(Role::Kernel).join("kernel");
    if !machine.takes_compressed {
        let bytes = std::fs::read(&kernel).map_err(io("reading the kernel image"))?;
        let plain = qemu::plain_image(&bytes).map_err(|e| RecipeError::failed(e, ""))?;
        kernel = ctx.work.join("Image");
        std::fs::write(&kernel, plain).map_err(io("writing the unpacked kernel image"))?;
    }
    let console = ctx.work.join(CONSOLE);
    let mut inv = Invocation::new("timeout", ctx.work)
        .args([
            "--kill-after=10",
            &spec.timeout.to_string(),
            machine.program,
        ])
        .args(machine.args.iter().copied())
        .args(qemu::accel(spec.arch).iter().copied())
        .args(["-m", "512", "-smp", "1", "-nodefaults", "-display", "none"])
        .args(["-no-reboot", "-serial"])
        .arg(format!("file:{}", console.display()));
    if let Some(bios) = machine.bios {
        inv = inv.args(["-bios", bios]);
    }
    let inv = inv
        .arg("-kernel")
        .arg(kernel.display().to_string())
        .arg("-initrd")
        .arg(initrd.display().to_string())
        .arg("-append")
        .arg(
            format!(
                "console={} panic=-1 printk.devkmsg=on {}",
                machine.console, machine.append
            )
            .trim_end()
            .to_string(),
        )
        .output(&console);
    let ran = ctx.run(inv);
    let text = std::fs::read(&console).unwrap_or_default();
    let text = String::from_utf8_lossy(&text).into_owned();
    match ran {
        Ok(()) => Ok(text),
        Err(RecipeError::Exec(ExecError::Failed {
            code: Some(124), ..
        })) if !text.trim().is_empty() => {
            // The kernel spoke and then hung: that is the kernel's failure, judged below.
            Ok(text)
        }
        Err(RecipeError::Exec(ExecError::Failed {
            code: Some(124), ..
        })) => Err(RecipeError::failed(
            format!(
                "{} printed nothing in {} s: the machine, not the kernel, is in question",
                machine.program, spec.timeout
            ),
            "check that the emulator runs here (see the log); a loaded machine may need a \
                 longer `test-timeout` in kernel.kdl",
        )),
        Err(RecipeError::Exec(ExecError::Failed {
            code: Some(126 | 127),
            ..
        })) => Err(RecipeError::failed(
            format!("cannot run {}", machine.program),
            format!("install it: apt-get install {}", machine.packages),
        )),
        Err(e) if text.contains("Linux version") => {
            // qemu ended badly after the kernel started (a triple fault resets, and -no-reboot
            // exits non-zero on some boards): the console decides.
            let _ = writeln!(&*ctx.log, "kbuild: {e}");
            Ok(text)
        }
        Err(e) => Err(e),
    }
}

/// Reads the console: what init said, KUnit's suites, a panic.
fn judge(console: &str, release: &str, modules: &[(String, Vec<u8>)], verdict: &mut Verdict) {
    let said = |what: &str| -> Option<String> {
        let marker = format!("kbuild-test: {what} ");
        console.lines().find_map(|line| {
            line.find(&marker).map(|at| {
                line[at + marker.len()..]
                    .trim_end_matches('\r')
                    .trim()
                    .to_string()
            })
        })
    };
    verdict.panic = console.lines().find_map(|line| {
        line.find("Kernel panic - not syncing")
            .map(|at| line[at..].trim().to_string())
    });
    match said("release") {
        Some(seen) if seen == release => {
            verdict.check("boot", true, format!("init runs on {seen}"))
        }
        Some(seen) => verdict.check(
            "release",
            false,
            format!("the running kernel says {seen}, the build made {release}"),
        ),
        None => verdict.check(
            "boot",
            false,
            "the kernel never ran the test's /init (see the console log)",
        ),
    }
    for (name, what) in [("mount /proc", "mount-proc"), ("mount /sys", "mount-sys")] {
        if let Some(answer) = said(what) {
            verdict.check(name, answer == "ok", answer);
        }
    }
    for (path, _) in modules {
        let marker = format!("kbuild-test: module /{path} ");
        let answer = console.lines().find_map(|line| {
            line.find(&marker).map(|at| {
                line[at + marker.len()..]
                    .trim_end_matches('\r')
                    .trim()
                    .to_string()
            })
        });
        let name = path.rsplit('/').next().unwrap_or(path);
        match answer {
            Some(answer) => verdict.check(format!("load {name}"), answer == "ok", answer),
            None => verdict.check(format!("load {name}"), false, "init never reported it"),
        }
    }
    verdict.kunit = crate::ktap::suites(console);
    if said("done").is_none() && verdict.panic.is_none() {
        verdict.check(
            "finish",
            false,
            "init never finished: the kernel hung or died (see the console log)",
        );
    }
}

/// Writes the result; a failed verdict is an error carrying the console, never an output.
fn finish(ctx: &Ctx, verdict: &Verdict, console: &str) -> Result<(), RecipeError> {
    let json = serde_json::to_string_pretty(verdict).expect("a verdict serialises");
    if verdict.passed() {
        return std::fs::write(ctx.out.join(RESULT), json).map_err(io("writing the result"));
    }
    let _ = writeln!(&*ctx.log, "kbuild: the test failed; its findings:\n{json}");
    if !console.is_empty() {
        let _ = writeln!(&*ctx.log, "kbuild: the serial console:\n{console}");
    }
    Err(RecipeError::TestFailed {
        message: verdict
            .first_failure()
            .unwrap_or_else(|| "the test failed".into()),
        findings: json,
    })
}
