//! The boot test's /init: one static C program, cross-built with the target's own compiler, so
//! that every arch's initramfs is made the same way from one source and nothing but libc.
//!
//! It says what it finds as `kbuild-test: <what> <detail>` lines: the release uname(2)
//! reports, the mounts of /proc and /sys, and each module of `/kbuild-test/load` (in load
//! order, dependencies first) with finit_module(2)'s answer; then `done`, and a reboot, which
//! `qemu -no-reboot` turns into an exit. The verdict is kbuild's, from these lines: the
//! program only reports.
//!
//! The lines go into the kernel's log through /dev/kmsg, so the console prints each as one
//! record among the kernel's own: written to the tty, a line could be spliced with a message
//! the kernel prints at the same moment, as PREEMPT_RT kernels do from their printk thread
//! (the rt kernel's KUnit output landed in the middle of a module's line). The command line
//! has `printk.devkmsg=on`, so that no line is rate-limited away. Without /dev/kmsg the lines
//! go to the console, each in one write(2).

/// The program's source, compiled as `init.c`.
pub const SOURCE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static int out = 1;

static void say(const char *what, const char *detail) {
    char line[600];
    int n = snprintf(line, sizeof line, "kbuild-test: %s %s\n", what, detail);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    write(out, line, n);
}

static void mounted(const char *what, const char *type, const char *dir) {
    mkdir(dir, 0755);
    say(what, mount(type, dir, type, 0, NULL) == 0 ? "ok" : strerror(errno));
}

static void load(const char *path) {
    char detail[560];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    long done = fd < 0 ? -1 : syscall(SYS_finit_module, fd, "", 0);
    const char *answer = done == 0 || errno == EEXIST ? "ok" : strerror(errno);
    snprintf(detail, sizeof detail, "%s %s", path, answer);
    say("module", detail);
    if (fd >= 0) close(fd);
}

int main(void) {
    int console = open("/dev/console", O_RDWR);
    if (console > 2) {
        dup2(console, 0);
        dup2(console, 1);
        dup2(console, 2);
    }
    int kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (kmsg >= 0) out = kmsg;
    struct utsname u;
    if (uname(&u) == 0) say("release", u.release);
    mounted("mount-proc", "proc", "/proc");
    mounted("mount-sys", "sysfs", "/sys");
    FILE *list = fopen("/kbuild-test/load", "r");
    char path[512];
    while (list && fgets(path, sizeof path, list)) {
        path[strcspn(path, "\n")] = 0;
        if (path[0]) load(path);
    }
    say("done", "");
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}
"#;
