//! Running a command to its end and keeping what it said: stdout and
//! stderr, each up to a byte bound (the rest read, dropped and counted),
//! its exit code, all within a deadline ([`run_output`]).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ToolCommand, Transport};
use crate::error::{BackupError, Result};

/// One stream's captured bytes, at most the bound given to [`run_output`],
/// and how many bytes past it were read and dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code (0: success).
    Exited(i32),
    /// It ended without an exit code: killed by a signal, or its channel
    /// lost; the text says which.
    Killed(String),
    /// It was still running at the deadline and was stopped.
    TimedOut,
}

/// What [`run_output`] saw.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Captured,
    pub stderr: Captured,
    pub ending: Ending,
}

/// Reads `r` to its end, keeping at most `limit` bytes in `into`.
async fn capture(
    r: Option<Box<dyn AsyncRead + Send + Unpin>>,
    into: &mut Captured,
    limit: usize,
) -> std::io::Result<()> {
    let Some(mut r) = r else { return Ok(()) };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let room = limit.saturating_sub(into.bytes.len()).min(n);
        into.bytes.extend_from_slice(&buf[..room]);
        into.dropped += (n - room) as u64;
    }
}

/// Runs `cmd` (no stdin) through `transport` and waits for its end, at
/// most `timeout` from now (start-up included). stdout and stderr are read
/// concurrently, each kept up to `limit` bytes.
///
/// `Err` only when the command could not be started (the transport's
/// error, classified for retries: nothing ran). Once it started, every
/// ending is an [`Output`]: a non-zero exit, a signal, a lost channel, the
/// deadline (the command is then stopped, and what it said so far kept).
pub async fn run_output(
    transport: &dyn Transport,
    cmd: &ToolCommand,
    limit: usize,
    timeout: Duration,
) -> Result<Output> {
    let mut cmd = cmd.clone();
    cmd.stdin = false;
    cmd.stdout = true;
    cmd.stderr = true;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stdout = Captured::default();
    let mut stderr = Captured::default();
    let mut p = match tokio::time::timeout_at(deadline, transport.spawn(&cmd)).await {
        Ok(p) => p?,
        Err(_) => {
            return Ok(Output {
                stdout,
                stderr,
                ending: Ending::TimedOut,
            })
        }
    };
    let (out, err) = (p.stdout.take(), p.stderr.take());
    let exit = p.exit;
    let run = async {
        let (a, b) = tokio::join!(
            capture(out, &mut stdout, limit),
            capture(err, &mut stderr, limit)
        );
        let read = a.and(b);
        let exit = exit.await;
        (read, exit)
    };
    // Dropping `run` at the deadline drops the process, which stops it.
    let ending = match tokio::time::timeout_at(deadline, run).await {
        Err(_) => Ending::TimedOut,
        Ok((read, exit)) => match exit {
            Ok(()) => match read {
                Ok(()) => Ending::Exited(0),
                Err(e) => Ending::Killed(format!("reading its output failed: {e}")),
            },
            Err(BackupError::Tool {
                exit_code: Some(code),
                ..
            }) => Ending::Exited(code),
            Err(BackupError::Tool { status, .. }) => Ending::Killed(status),
            Err(e) => Ending::Killed(e.to_string()),
        },
    };
    Ok(Output {
        stdout,
        stderr,
        ending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Local;

    fn sh(script: &str) -> ToolCommand {
        ToolCommand::new("sh").arg("-c").arg(script)
    }

    #[tokio::test]
    async fn captures_both_streams_and_the_exit_code() {
        let out = run_output(
            &Local,
            &sh("echo out; echo err >&2; exit 3"),
            1024,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.bytes, b"out\n");
        assert_eq!(out.stderr.bytes, b"err\n");
        assert_eq!(out.ending, Ending::Exited(3));
    }

    #[tokio::test]
    async fn bounds_each_stream_and_counts_the_rest() {
        let out = run_output(
            &Local,
            &sh("head -c 300000 /dev/zero; head -c 5000 /dev/zero >&2"),
            1000,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.bytes.len(), 1000);
        assert_eq!(out.stdout.dropped, 299_000);
        assert_eq!(out.stderr.bytes.len(), 1000);
        assert_eq!(out.stderr.dropped, 4000);
        assert_eq!(out.ending, Ending::Exited(0));
    }

    #[tokio::test]
    async fn stops_at_the_deadline_keeping_what_was_said() {
        let started = std::time::Instant::now();
        let out = run_output(
            &Local,
            &sh("echo before; exec sleep 30"),
            1024,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(out.ending, Ending::TimedOut);
        assert_eq!(out.stdout.bytes, b"before\n");
    }

    #[tokio::test]
    async fn a_signal_is_no_exit_code() {
        let out = run_output(&Local, &sh("kill -KILL $$"), 1024, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(out.ending, Ending::Killed(_)), "{:?}", out.ending);
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_an_error() {
        let err = run_output(
            &Local,
            &ToolCommand::new("no-such-program-sluice"),
            1024,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }
}
