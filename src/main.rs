//! The `bitseed` command: subcommands in `cli/`, errors turned into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            let code = if err.downcast_ref::<cli::UsageError>().is_some() {
                2
            } else {
                1
            };
            eprintln!("bitseed: error: {}", cli::one_line(&err));
            code
        }
    };
    std::process::exit(code);
}
