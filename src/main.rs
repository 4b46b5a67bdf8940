fn main() {
    // Die quietly on a closed pipe (`kbuild list | head`), as command-line tools do, instead of
    // panicking on the failed write.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Arguments are OS strings: a path or label that is not UTF-8 is clap's clear error (or a
    // path kbuild takes as it is), never a panic of `std::env::args`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == kbuild::exec::guard::ARG) {
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(kbuild::exec::guard::main(&rest));
    }
    std::process::exit(kbuild::cli::main());
}
