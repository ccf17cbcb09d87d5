//! mailgrant binary: the setup window by default, a headless command when one is named.

use std::process::ExitCode;

use clap::Parser;
use mailgrant::cli::{self, Cli};
use mailgrant::gui::{self, GuiOptions};

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        Some(command) => cli::run(args.config, command),
        None => match gui::run(GuiOptions { config_path: args.config }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("mailgrant could not open its window: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
