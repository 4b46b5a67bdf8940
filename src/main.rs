fn main() {
    // Die quietly on a closed pipe (`kbuild list | head`), as command-line tools do, instead of
    // panicking on the failed write.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    std::process::exit(kbuild::cli::main());
}
