//! The `tunlab` binary: parse the command line, start the runtime, hand both to the library.

use std::process::ExitCode;

use clap::Parser;
use tunlab::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(code) = tunlab::app::prepare(&cli) {
        return code;
    }
    // One thread: everything on this one, no hand-offs between threads at all.
    let runtime = match cli.runtime_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    }
    .enable_all()
    .build();
    let runtime = match runtime {
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
