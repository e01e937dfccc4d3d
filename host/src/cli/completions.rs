//! `kontor completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell, generated from the same clap definitions that parse the command line, so
//! it always knows every subcommand and option of this build.

use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Install it, for example:\n  \
    kontor completions bash > ~/.local/share/bash-completion/completions/kontor\n  \
    kontor completions zsh > ~/.zfunc/_kontor   (with `fpath+=~/.zfunc` before compinit)\n  \
    kontor completions fish > ~/.config/fish/completions/kontor.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `command` (the whole `kontor` command line) to stdout.
pub fn run(args: &CompletionsArgs, mut command: clap::Command) -> ExitCode {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}
