//! The `switchboard` command line: `main.rs` parses it ([`args`]), [`run`] carries it
//! out: `gateway` (the daemon and its service), `remote` (client commands), `logs`.

mod args;
pub mod client;
mod events;
mod gateway;
mod logs;
mod remote;

use clap::CommandFactory;
use switchboard_schemas::methods::{
    ChannelsLogoutParams, ChannelsStatusParams, ClosedNoParams, DeviceTokenRevokeParams,
    HealthParams, NoParams, PairingCodeParams, PairingListParams, PairingRequestParams,
    PairingRevokeParams, WorkerControlParams,
};

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
        Command::Workers { command, conn } => match command {
            WorkersCommand::List => remote::call_gateway(conn, "workers.list", &NoParams {}),
            WorkersCommand::Restart { name } => {
                remote::call_gateway(conn, "workers.restart", &WorkerControlParams { name })
            }
            WorkersCommand::Stop { name } => {
                remote::call_gateway(conn, "workers.stop", &WorkerControlParams { name })
            }
            WorkersCommand::Start { name } => {
                remote::call_gateway(conn, "workers.start", &WorkerControlParams { name })
            }
        },
        Command::Devices { command, conn } => match command {
            DevicesCommand::List => {
                remote::call_gateway(conn, "device.pair.list", &ClosedNoParams {})
            }
            DevicesCommand::Approve { request_id } => remote::call_gateway(
                conn,
                "device.pair.approve",
                &PairingRequestParams { request_id },
            ),
            DevicesCommand::Reject { request_id } => remote::call_gateway(
                conn,
                "device.pair.reject",
                &PairingRequestParams { request_id },
            ),
            DevicesCommand::Revoke { device_id, role } => remote::call_gateway(
                conn,
                "device.token.revoke",
                &DeviceTokenRevokeParams { device_id, role },
            ),
        },
        Command::Channels { command, conn } => match command {
            ChannelsCommand::Status => {
                remote::call_gateway(conn, "channels.status", &ChannelsStatusParams::default())
            }
            ChannelsCommand::Login {
                channel,
                force,
                timeout,
            } => remote::channels_login(conn, &channel.to_ascii_lowercase(), force, timeout),
            ChannelsCommand::Logout { channel } => remote::call_gateway(
                conn,
                "channels.logout",
                &ChannelsLogoutParams {
                    channel,
                    account_id: None,
                },
            ),
        },
        Command::Pairing { command, conn } => match command {
            PairingCommand::List { channel } => {
                remote::call_gateway(conn, "pairing.list", &PairingListParams { channel })
            }
            PairingCommand::Approve {
                channel,
                code,
                notify,
            } => remote::call_gateway(
                conn,
                "pairing.approve",
                &PairingCodeParams {
                    channel,
                    code,
                    notify: Some(notify),
                },
            ),
            PairingCommand::Reject { channel, code } => remote::call_gateway(
                conn,
                "pairing.reject",
                &PairingCodeParams {
                    channel,
                    code,
                    notify: None,
                },
            ),
            PairingCommand::Revoke { channel, id } => {
                remote::call_gateway(conn, "pairing.revoke", &PairingRevokeParams { channel, id })
            }
        },
        Command::Health { conn } => remote::call_gateway(conn, "health", &HealthParams::default()),
        Command::Status { conn } => remote::call_gateway(conn, "status", &NoParams {}),
        Command::Logs(args) => logs::logs(args),
        Command::Events(args) => events::events(args),
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
