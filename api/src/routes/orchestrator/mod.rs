//! The Schema Migration Orchestrator contract (`/api/v1/databases`,
//! `/api/v1/migrations/...`): thin handlers around `sluice-orchestrator`
//! (parsing, lint, health, rollback) and the `migration` job (execution).
//! Errors are the contract's `{"error": {code, message, details, traceId,
//! timestamp}}` ([`crate::error::Family::Orchestrator`]).
//!
//! [`access`] holds the role table of the conventions (section 3) in one
//! place; [`ids`] the public ids (`db-7`, `mig-12`, `exec-3`, `appr-5`).

pub mod access;
pub mod approvals;
pub mod databases;
pub mod executions;
pub mod ids;
pub mod limit;
pub mod migrations;

/// RFC 3339 in UTC with milliseconds.
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
