//! Running one job: attempts with a timeout each, retries with doubling
//! pauses for transient failures, none for permanent ones, and the task's
//! row kept true throughout (running, then completed or failed).

use std::future::Future;
use std::time::Duration;

use sluice_storage::pg::tasks;

use crate::context::JobContext;
use crate::error::JobError;

/// Runs `attempt` until it succeeds, fails for good, or has used every
/// retry; each attempt may take at most `timeout`. The task is marked
/// running before each attempt; completing or failing it is the caller's
/// (it knows what else to record), through [`finish`].
pub async fn run<T, F, Fut>(
    ctx: &JobContext,
    task_id: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, JobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, JobError>>,
{
    let mut delay = ctx.settings.retry_delay;
    let mut retries_left = ctx.settings.retries;
    loop {
        tasks::start(&ctx.pg, task_id).await?;
        let outcome = match tokio::time::timeout(timeout, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(JobError::Permanent(format!(
                "timed out after {} s (the limit of this kind of job)",
                timeout.as_secs()
            ))),
        };
        match outcome {
            Err(JobError::Transient(m)) if retries_left > 0 => {
                tracing::warn!(task_id, error = %m, retry_in_s = delay.as_secs_f64(), "transient failure; retrying");
                metrics::counter!("sluice_job_retries_total").increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(ctx.settings.retry_max_delay);
                retries_left -= 1;
            }
            other => return other,
        }
    }
}

/// Records the task's end.
pub async fn finish<T>(ctx: &JobContext, task_id: &str, outcome: &Result<T, JobError>) {
    let r = match outcome {
        Ok(_) => tasks::complete(&ctx.pg, task_id).await,
        Err(e) => tasks::fail(&ctx.pg, task_id, e.message()).await,
    };
    if let Err(e) = r {
        tracing::error!(task_id, error = %e, "could not record the task's end");
    }
    let label = if outcome.is_ok() {
        "completed"
    } else {
        "failed"
    };
    metrics::counter!("sluice_jobs_finished_total", "outcome" => label).increment(1);
}
