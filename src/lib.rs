//! The `sluice` binary's library: configuration, the listener that routes
//! between ingest and api, and [`app::start`], which assembles the tiers a
//! mode asks for. Tests start the same app in-process on an ephemeral port.

pub mod app;
pub mod config;
pub mod server;
