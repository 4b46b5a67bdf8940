fn main() {
    // Die quietly on a closed pipe (`kbuild list | head`), as command-line tools do, instead of
    // panicking on the failed write.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(kbuild::exec::guard::ARG) {
        std::process::exit(kbuild::exec::guard::main(&args[1..]));
    }
    std::process::exit(kbuild::cli::main());
}
