//! The `command` job: runs a saved command's substituted text with
//! `sh -c` through its server's transport, and records what it said
//! (stdout and stderr, each bounded), its exit code and its duration.
//!
//! A command that ran is never run again: a non-zero exit, a signal or
//! the timeout ends the execution `failed` at once. Only a failure to
//! start it (the SSH server refusing the connection, Sluice's database
//! away) is retried, as for every job ([`crate::attempt`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_backup::transport::{run_output, Captured, Ending};
use sluice_backup::ToolCommand;
use sluice_storage::pg::commands::{self, Finished};
use sluice_storage::pg::servers;
use tracing::Instrument;
use uuid::Uuid;

use crate::attempt;
use crate::context::JobContext;
use crate::endpoint;
use crate::error::JobError;

/// Beyond the command's own timeout, what one attempt may spend
/// connecting and recording.
const GRACE: Duration = Duration::from_secs(60);

/// Run the execution the API recorded as pending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub execution_id: i64,
}

/// Captured bytes as text a PostgreSQL `TEXT` takes: invalid UTF-8 (a
/// sequence cut at the bound included) and NUL become U+FFFD.
fn text(c: &Captured) -> String {
    String::from_utf8_lossy(&c.bytes).replace('\0', "\u{FFFD}")
}

fn dropped(c: &Captured) -> i64 {
    i64::try_from(c.dropped).unwrap_or(i64::MAX)
}

/// One attempt: `Ok(None)` when the command exited 0, `Ok(Some(why))`
/// when it ran and failed (recorded already), `Err` when it could not be
/// run.
async fn run_once(ctx: &JobContext, job: &CommandJob) -> Result<Option<String>, JobError> {
    let e = commands::get_execution(&ctx.pg, job.tenant, job.execution_id)
        .await?
        .ok_or_else(|| {
            JobError::Permanent(format!(
                "execution {} no longer exists (its command was deleted)",
                job.execution_id
            ))
        })?;
    match e.status.as_str() {
        // A worker died after recording the end but before apalis heard.
        "completed" => return Ok(None),
        "failed" => return Ok(Some(e.error_message.unwrap_or_else(|| "failed".into()))),
        _ => {}
    }
    let server = servers::get(&ctx.pg, job.tenant, e.server_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("server {} no longer exists", e.server_id)))?;
    let target = endpoint::load_target(&ctx.pg, &ctx.secrets, &server)
        .await?
        .map_err(JobError::Permanent)?;
    if !commands::start_execution(&ctx.pg, e.id).await? {
        return Ok(None);
    }
    let cmd = ToolCommand::new("sh")
        .arg("-c")
        .arg(e.command_text.as_str());
    let timeout = ctx.settings.command_timeout;
    let out = run_output(
        &*target.transport,
        &cmd,
        ctx.settings.command_output_limit,
        timeout,
    )
    .await?;
    target.remember_host_key(&ctx.pg).await;
    let (status, exit_code, error) = match &out.ending {
        Ending::Exited(0) => ("completed", Some(0), None),
        Ending::Exited(code) => (
            "failed",
            Some(*code),
            Some(format!("the command exited with code {code}")),
        ),
        Ending::Killed(why) => (
            "failed",
            None,
            Some(format!("the command ended without an exit code ({why})")),
        ),
        Ending::TimedOut => (
            "failed",
            None,
            Some(format!(
                "the command timed out after {} s and was stopped",
                timeout.as_secs()
            )),
        ),
    };
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    commands::finish_execution(
        &ctx.pg,
        e.id,
        &Finished {
            status,
            exit_code,
            stdout: Some(&stdout),
            stderr: Some(&stderr),
            stdout_dropped_bytes: dropped(&out.stdout),
            stderr_dropped_bytes: dropped(&out.stderr),
            error_message: error.as_deref(),
        },
    )
    .await?;
    tracing::info!(
        execution_id = e.id,
        status,
        exit_code,
        stdout_bytes = out.stdout.bytes.len(),
        stdout_dropped = out.stdout.dropped,
        stderr_bytes = out.stderr.bytes.len(),
        stderr_dropped = out.stderr.dropped,
        "command ran"
    );
    Ok(error)
}

/// Runs a command job to its end and records it.
pub async fn execute(ctx: &JobContext, job: CommandJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "command", task_id = %job.task_id, execution_id = job.execution_id);
    async {
        let ran = attempt::run(
            ctx,
            &job.task_id,
            ctx.settings.command_timeout + GRACE,
            || run_once(ctx, &job),
        )
        .await;
        let outcome = match ran {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(JobError::Permanent(why)),
            Err(e) => {
                // It never ran (or the attempt itself timed out): the
                // execution fails with why, without an exit code.
                let r = commands::finish_execution(
                    &ctx.pg,
                    job.execution_id,
                    &Finished {
                        status: "failed",
                        exit_code: None,
                        stdout: None,
                        stderr: None,
                        stdout_dropped_bytes: 0,
                        stderr_dropped_bytes: 0,
                        error_message: Some(e.message()),
                    },
                )
                .await;
                if let Err(db) = r {
                    tracing::error!(error = %db, "could not record the execution's failure");
                }
                tracing::warn!(error = %e, "command could not run");
                Err(e)
            }
        };
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome
    }
    .instrument(span)
    .await
}
