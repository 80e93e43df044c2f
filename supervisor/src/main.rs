use clap::Parser;

fn main() -> std::process::ExitCode {
    switchboard::cli::run(switchboard::cli::Cli::parse()).into()
}
