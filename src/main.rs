fn main() {
    std::process::exit(kbuild::cli::main());
}
