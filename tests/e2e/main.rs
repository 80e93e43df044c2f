//! End-to-end tests against the real `switchboard` binary over real sockets.
//! Each test is named after the rule it checks (protocol.md, protocol-v4.md, the issues).

mod harness;

mod bench;
mod browser;
mod canvas;
mod client_strings;
mod config_edit;
mod confinement;
mod control_ui;
mod core;
mod cron;
mod devices;
mod discord;
mod durability;
mod first_run;
mod guessing;
mod imessage;
mod lifecycle;
mod limits;
mod nodes;
mod ops;
mod resume;
mod scopes;
mod signal;
mod signal_spawn;
mod slack;
mod standin_discord;
mod standin_imessage;
mod standin_openai;
mod standin_signal;
mod standin_slack;
mod standin_telegram;
mod state_loss;
mod telegram;
mod tidy;
mod tls;
mod ts_client;
mod v4;
mod webchat;
mod whatsapp;
mod workers;
