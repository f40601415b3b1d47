//! Where database tools run. A [`Transport`] starts a [`ToolCommand`] and
//! hands back its pipes and its exit:
//!
//! - [`Local`]: a child process on this host;
//! - [`Ssh`]: a command on another host, over one SSH connection per
//!   transport (password or private key, host key pinned or trusted on first
//!   use);
//! - [`Docker`]: `docker exec` into a container on an SSH host.
//!
//! [`run_output`] runs a command to its end and keeps its stdout, stderr
//! and exit code, each stream bounded.
//!
//! Passwords travel in the tool's environment (`PGPASSWORD`, `MYSQL_PWD`),
//! never on its command line, locally or remotely (see [`Ssh`] for how), and
//! [`ToolCommand`]'s `Debug` prints the names of environment variables,
//! never their values.

use std::collections::VecDeque;
use std::fmt;
use std::process::Stdio;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::error::{BackupError, Result, ToolFailure};

mod output;
mod ssh;

pub use output::{run_output, Captured, Ending, Output};
pub use ssh::{Docker, Ssh, SshAuth, SshConfig};

/// The most of a tool's stderr kept for its error message (the end of it).
const STDERR_TAIL: usize = 4096;
/// The most stdout [`run_capture`] keeps (admin queries answer a few lines).
const CAPTURE_LIMIT: usize = 1 << 20;

/// A program to run, with its arguments and extra environment.
#[derive(Clone)]
pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment; values may be secrets and are never printed.
    pub env: Vec<(String, String)>,
    /// Whether the caller writes to the tool's stdin (else it reads nothing).
    pub stdin: bool,
    /// Whether the caller reads the tool's stdout (else it is discarded).
    pub stdout: bool,
    /// Whether the caller reads the tool's stderr itself (else the
    /// transport keeps its end for the error message).
    pub stderr: bool,
}

impl ToolCommand {
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: false,
            stdout: false,
            stderr: false,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    pub fn with_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    pub fn with_stdout(mut self) -> Self {
        self.stdout = true;
        self
    }

    /// The caller reads stderr ([`Process::stderr`]); the exit's error
    /// then carries no stderr text.
    pub fn with_stderr(mut self) -> Self {
        self.stderr = true;
        self
    }
}

impl fmt::Debug for ToolCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self.env.iter().map(|(k, _)| format!("{k}=…")).collect();
        f.debug_struct("ToolCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .finish()
    }
}

/// A started tool: its pipes (present when the command asked for them) and
/// its exit, which resolves to `Ok` on success or to [`BackupError::Tool`]
/// with its exit code and the end of its stderr. Dropping a `Process`
/// before its exit kills the tool. A caller that takes both `stdout` and
/// `stderr` must read them concurrently (a full pipe blocks the tool).
pub struct Process {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub exit: BoxFuture<'static, Result<()>>,
}

/// Starts database tools somewhere: on this host, over SSH, in a container.
///
/// `spawn` is asynchronous (a remote transport connects, authenticates and
/// opens a channel first) and boxed so the trait stays object-safe:
/// callers hold a `&dyn Transport`.
pub trait Transport: Send + Sync {
    fn spawn<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<Process>>;
}

/// A shared transport (one SSH connection behind several users).
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn spawn<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<Process>> {
        (**self).spawn(cmd)
    }
}

/// Runs tools as child processes of this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Transport for Local {
    fn spawn<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<Process>> {
        Box::pin(std::future::ready(spawn_local(cmd)))
    }
}

fn spawn_local(cmd: &ToolCommand) -> Result<Process> {
    let mut c = tokio::process::Command::new(&cmd.program);
    c.args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if cmd.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tracing::debug!(command = ?cmd, "starting tool");
    let mut child = c.spawn().map_err(|source| BackupError::Spawn {
        tool: cmd.program.clone(),
        source,
    })?;
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>);
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>);
    // stderr is the caller's when it asked; otherwise it is drained as it
    // comes so a chatty tool never blocks on a full pipe, and only its last
    // STDERR_TAIL bytes are kept.
    let (caller_stderr, stderr) = if cmd.stderr {
        let e = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>);
        (e, None)
    } else {
        (None, child.stderr.take())
    };
    let tail = tokio::spawn(async move {
        let mut tail = StderrTail::default();
        if let Some(mut err) = stderr {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.push(&buf[..n]);
            }
        }
        tail.finish()
    });
    let tool = cmd.program.clone();
    let exit = Box::pin(async move {
        let status = child.wait().await?;
        let stderr = tail.await.unwrap_or_default();
        let signalled = status.code().is_none();
        tool_exit(tool, status.code(), status.to_string(), signalled, stderr)
    });
    Ok(Process {
        stdin,
        stdout,
        stderr: caller_stderr,
        exit,
    })
}

/// The end of a tool's stderr: the last [`STDERR_TAIL`] bytes written.
#[derive(Default)]
pub(crate) struct StderrTail(VecDeque<u8>);

impl StderrTail {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        let over = (self.0.len() + bytes.len()).saturating_sub(STDERR_TAIL);
        self.0.drain(..over);
        self.0.extend(bytes);
    }

    pub(crate) fn finish(mut self) -> String {
        String::from_utf8_lossy(self.0.make_contiguous())
            .trim()
            .to_owned()
    }
}

/// A tool's verdict from its exit: `Ok` on exit code 0, else
/// [`BackupError::Tool`] classified from its stderr. `code` is `None`
/// when the tool ended without an exit code (a signal, a lost channel).
pub(crate) fn tool_exit(
    tool: String,
    code: Option<i32>,
    status: String,
    signalled: bool,
    stderr: String,
) -> Result<()> {
    if code == Some(0) {
        if !stderr.is_empty() {
            tracing::debug!(tool = %tool, stderr = %stderr, "tool succeeded with messages");
        }
        return Ok(());
    }
    Err(BackupError::Tool {
        failure: ToolFailure::classify(&stderr, signalled),
        status,
        exit_code: code,
        message: if stderr.is_empty() {
            "no message".into()
        } else {
            stderr
        },
        tool,
    })
}

/// Runs a command that reads nothing and answers a little text (an admin
/// query), and returns its stdout.
pub async fn run_capture(transport: &dyn Transport, cmd: &ToolCommand) -> Result<String> {
    let mut cmd = cmd.clone();
    cmd.stdout = true;
    cmd.stdin = false;
    let mut p = transport.spawn(&cmd).await?;
    let mut out = Vec::new();
    if let Some(stdout) = p.stdout.take() {
        stdout
            .take(CAPTURE_LIMIT as u64)
            .read_to_end(&mut out)
            .await?;
    }
    p.exit.await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
