//! The `tunlab` binary: parse the command line, start the runtime, hand both to the library.

use std::process::ExitCode;

use clap::Parser;
use tunlab::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(code) = tunlab::app::prepare(&cli) {
        return code;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tunlab::app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
