//! Shell integration: completion scripts (clap_complete) and man pages (clap_mangen), both
//! made from the same CLI definition as `--help`, so they never drift from it.

use std::path::Path;

use clap::CommandFactory;

use super::Cli;

/// The shells `kbuild completions` writes a script for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Completes target labels (`//6.6.x:amd64`) from `kbuild list` of the workspace (`-C DIR` on
/// the line, else the current directory), and everything else as clap's script does. The word
/// is read from the line itself, because bash splits `//6.6.x:amd64` at the colon; the
/// candidates lose what precedes the last colon, as bash-completion's own helpers do.
const BASH_LABELS: &str = r#"
_kbuild_with_labels() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local word="${line##*[[:space:]]}"
    if [[ "$word" == //* ]]; then
        local dir=() i
        for ((i = 1; i < COMP_CWORD; i++)); do
            [[ "${COMP_WORDS[i]}" == -C ]] && dir=(-C "${COMP_WORDS[i+1]}")
        done
        local labels
        labels=$(command kbuild "${dir[@]}" list 2>/dev/null | awk '$1 ~ /^\/\// {print $1}')
        COMPREPLY=($(compgen -W "$labels" -- "$word"))
        if [[ "$word" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
            local prefix="${word%"${word##*:}"}"
            for i in "${!COMPREPLY[@]}"; do
                COMPREPLY[i]="${COMPREPLY[i]#"$prefix"}"
            done
        fi
        return 0
    fi
    _kbuild "$@"
}
complete -F _kbuild_with_labels -o nosort -o bashdefault -o default kbuild
"#;

/// Prints the completion script of `shell` on stdout.
pub(crate) fn completions(shell: Shell) -> miette::Result<i32> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(generator, &mut command, "kbuild", &mut std::io::stdout());
    if matches!(shell, Shell::Bash) {
        print!("{BASH_LABELS}");
    }
    Ok(0)
}

/// Writes `kbuild.1` and a page per subcommand (`kbuild-run.1` …) into `dir`.
pub(crate) fn man(dir: &Path) -> miette::Result<i32> {
    std::fs::create_dir_all(dir).map_err(|e| miette::miette!("creating {}: {e}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| miette::miette!("writing man pages into {}: {e}", dir.display()))?;
    eprintln!("wrote the man pages into {}", dir.display());
    Ok(0)
}
