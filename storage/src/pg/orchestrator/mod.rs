//! The schema migration orchestrator's records: registered databases,
//! migrations, approvals and executions. Every query a tenant's request
//! makes is scoped to that tenant; connection strings are stored only as
//! [`crate::secrets::SecretBox`] sealed them.

pub mod approvals;
pub mod databases;
pub mod executions;
pub mod migrations;
