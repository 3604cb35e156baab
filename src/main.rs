//! The `tunlab` binary: parse the command line, hand it to the library.

fn main() -> std::process::ExitCode {
    tunlab::cli::main()
}
