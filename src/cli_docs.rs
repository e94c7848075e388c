//! `weir completions SHELL` and `weir man`: shell completion scripts and
//! roff man pages, generated from the command line's clap definitions
//! (`clap_complete`, `clap_mangen`), so that they always match the
//! commands and options the binary really has.
//!
//! It deliberately writes nothing by hand: no extra man sections, no
//! hand-tuned completion logic, and it installs nothing (where the
//! scripts and pages go is the packager's call; README's "Deploying"
//! section has the usual places).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

pub use clap_complete::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the man page of the whole command (its subcommands listed) to `out`.
pub fn write_man(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// Writes one man page per command into `dir` (created if missing):
/// `weir.1`, `weir-run.1`, `weir-buffer-inspect.1`, …; returns their names.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    names.sort();
    Ok(names)
}

/// `weir completions SHELL`: the script on standard output.
pub fn completions(cmd: clap::Command, shell: Shell) -> ExitCode {
    let mut out = Vec::new();
    write_completions(cmd, shell, &mut out);
    print(&out)
}

/// `weir man [--output DIR]`: the page on standard output, or every page
/// written into DIR.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> ExitCode {
    match dir {
        None => {
            let mut out = Vec::new();
            match write_man(cmd, &mut out) {
                Ok(()) => print(&out),
                Err(e) => {
                    eprintln!("error: cannot render the man page: {e}");
                    ExitCode::from(crate::commands::EXIT_RUNTIME)
                }
            }
        }
        Some(dir) => match write_man_pages(cmd, dir) {
            Ok(names) => {
                eprintln!(
                    "wrote {} man pages to {}: {}",
                    names.len(),
                    dir.display(),
                    names.join(" ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: cannot write the man pages to {}: {e} (give a directory you can write to with --output)",
                    dir.display()
                );
                ExitCode::from(crate::commands::EXIT_RUNTIME)
            }
        },
    }
}

/// Writes to standard output; a reader that went away (`| head`) is no
/// error.
fn print(bytes: &[u8]) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::from(crate::commands::EXIT_RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("demo")
            .version("1.0")
            .about("A demo.")
            .subcommand(clap::Command::new("run").about("Runs."))
            .subcommand(
                clap::Command::new("buffer")
                    .subcommand(clap::Command::new("inspect").about("Looks.")),
            )
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            write_completions(cli(), shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("inspect"), "{shell}: {text}");
        }
    }

    #[test]
    fn one_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let names = write_man_pages(cli(), &dir.path().join("man1")).unwrap();
        assert_eq!(
            names,
            [
                "demo-buffer-inspect.1",
                "demo-buffer.1",
                "demo-run.1",
                "demo.1"
            ]
        );
        let mut page = Vec::new();
        write_man(cli(), &mut page).unwrap();
        assert!(String::from_utf8(page).unwrap().starts_with(".ie"));
    }
}
