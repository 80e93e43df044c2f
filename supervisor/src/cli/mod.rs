//! The `switchboard` command line: `main.rs` parses it ([`args`]), [`run`] carries it
//! out: `gateway` (the daemon and its service), `remote` (client commands), `logs`.

mod args;
pub mod client;
mod gateway;
mod logs;
mod remote;

use clap::CommandFactory;
use serde_json::json;

use crate::ops::exit::ExitCode;
pub use args::*;

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::net::tls::provider();
    let Some(command) = cli.command else {
        print!("{SHORT_HELP}");
        return ExitCode::Ok;
    };
    match command {
        Command::Gateway { command } => match command {
            GatewayCommand::Run(args) => gateway::gateway_run(args),
            GatewayCommand::Status(args) => gateway::gateway_status(args),
            GatewayCommand::Restart(args) => gateway::gateway_restart(args),
            GatewayCommand::Install(args) => gateway::install_command(args, false),
            GatewayCommand::Uninstall(args) => gateway::install_command(args, true),
            GatewayCommand::Fingerprint(args) => gateway::fingerprint(args),
            GatewayCommand::Token(args) => gateway::token(args),
        },
        Command::Config { command } => gateway::config_command(command),
        Command::Workers { command, conn } => {
            let (method, params) = match command {
                WorkersCommand::List => ("workers.list", json!({})),
                WorkersCommand::Restart { name } => ("workers.restart", json!({ "name": name })),
                WorkersCommand::Stop { name } => ("workers.stop", json!({ "name": name })),
                WorkersCommand::Start { name } => ("workers.start", json!({ "name": name })),
            };
            remote::call_gateway(conn, method, params)
        }
        Command::Devices { command, conn } => {
            let (method, params) = match command {
                DevicesCommand::List => ("device.pair.list", json!({})),
                DevicesCommand::Approve { request_id } => {
                    ("device.pair.approve", json!({ "requestId": request_id }))
                }
                DevicesCommand::Reject { request_id } => {
                    ("device.pair.reject", json!({ "requestId": request_id }))
                }
                DevicesCommand::Revoke { device_id, role } => (
                    "device.token.revoke",
                    json!({ "deviceId": device_id, "role": role }),
                ),
            };
            remote::call_gateway(conn, method, params)
        }
        Command::Channels { command, conn } => match command {
            ChannelsCommand::Status => remote::call_gateway(conn, "channels.status", json!({})),
            ChannelsCommand::Login {
                channel,
                force,
                timeout,
            } => remote::channels_login(conn, &channel.to_ascii_lowercase(), force, timeout),
            ChannelsCommand::Logout { channel } => {
                remote::call_gateway(conn, "channels.logout", json!({ "channel": channel }))
            }
        },
        Command::Pairing { command, conn } => {
            let (method, params) = match command {
                PairingCommand::List { channel } => ("pairing.list", json!({ "channel": channel })),
                PairingCommand::Approve {
                    channel,
                    code,
                    notify,
                } => (
                    "pairing.approve",
                    json!({ "channel": channel, "code": code, "notify": notify }),
                ),
                PairingCommand::Reject { channel, code } => (
                    "pairing.reject",
                    json!({ "channel": channel, "code": code }),
                ),
                PairingCommand::Revoke { channel, id } => {
                    ("pairing.revoke", json!({ "channel": channel, "id": id }))
                }
            };
            remote::call_gateway(conn, method, params)
        }
        Command::Health { conn } => remote::call_gateway(conn, "health", json!({})),
        Command::Status { conn } => remote::call_gateway(conn, "status", json!({})),
        Command::Logs(args) => logs::logs(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchboard",
                &mut std::io::stdout(),
            );
            ExitCode::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_documents_the_exit_codes() {
        fn walk(c: &clap::Command, path: &str) {
            let name = format!("{path} {}", c.get_name());
            if c.get_subcommands().next().is_none() && c.get_name() != "completions" {
                let help = c
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    help.contains("Exit codes"),
                    "{name} --help has no exit codes"
                );
            }
            for s in c.get_subcommands() {
                if s.get_name() != "help" {
                    walk(s, &name);
                }
            }
        }
        walk(&Cli::command(), "");
    }
}
