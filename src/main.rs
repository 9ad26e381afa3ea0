//! The `bitseed` command: subcommands in `cli/`, errors turned into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) if err.use_stderr() => {
            // One line, like every other error; `--help` has the details.
            eprintln!("bitseed: error: {}", cli::clap_one_line(&err.to_string()));
            std::process::exit(2);
        }
        Err(err) => err.exit(),
    };
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
