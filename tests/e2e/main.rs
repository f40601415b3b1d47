//! End-to-end tests: the real app on an ephemeral port, against the real
//! Redis, Postgres and ClickHouse, used over HTTP as a client would. Each
//! test has its own tenant and its own Redis key prefix.

mod alerts;
mod analytics;
mod audit;
mod backups;
mod commands;
mod crash;
mod dead_letters;
mod durability;
mod errors;
mod errors_extra;
mod identity;
mod ingest_limits;
mod monitoring;
mod notifications;
mod openapi;
mod orchestrator;
mod outage;
mod poison_input;
mod retention;
mod roles;
mod schedules;
mod sentry;
mod servers;
mod settings;
mod slow_clients;
mod store_breaker;
mod support;
mod tracking;
mod users;
mod ws;
