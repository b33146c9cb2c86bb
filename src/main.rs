//! The `scalelab` command: parse, run, print the error on one line, return an exit code.

fn main() -> std::process::ExitCode {
    scalelab::cli::main()
}
