//! Tools on another host, over SSH ([`Ssh`]), or inside a container there
//! through `docker exec` ([`Docker`]), with the pure-Rust `russh` client.
//!
//! **One connection per transport.** The first spawn connects and
//! authenticates (password or OpenSSH private key); later spawns open a new
//! session channel on the same connection, and reconnect once when it has
//! dropped. Each spawn `exec`s one command line on its channel.
//!
//! **Host keys: trust on first use.** Given an expected SHA-256 fingerprint
//! (OpenSSH's `SHA256:…` form, as `ssh-keygen -l` prints it) the transport
//! refuses any other key with [`BackupError::HostKeyMismatch`]; given none it
//! accepts the key and records its fingerprint, which the caller reads with
//! [`Ssh::seen_host_key`] and stores for the next time.
//!
//! **Secrets never reach a command line.** `sshd` runs the command through
//! the user's login shell, where `ps` shows it to every user of the host, and
//! the SSH `env` request is refused by most servers (`AcceptEnv`). So the
//! command line is a fixed `sh -c` wrapper followed by the single-quoted
//! program and arguments; the environment (`PGPASSWORD`, `MYSQL_PWD`, …)
//! travels as the first lines of the channel's stdin, `NAME=value` each, up
//! to an empty line. The wrapper `read`s and `export`s them (`read` takes
//! one byte at a time from a pipe, so nothing past the empty line is
//! consumed), then `exec`s the tool, whose stdin is the rest of the stream.
//! The values end up only in the tool's environment, as with [`Local`].
//! Environment values therefore cannot hold a newline (nor names anything
//! but `[A-Za-z_][A-Za-z0-9_]*`); such a command is refused as invalid.
//! [`Docker`] wraps `docker exec -i -e NAME … <container> <program> <args>`
//! the same way: `-e NAME` without `=value` makes the docker CLI take the
//! value from its own environment, which the wrapper just exported.
//!
//! **Dropping a [`Process`]** before its exit stops the remote tool: a
//! `signal` request (TERM) on its channel, and, because OpenSSH refuses
//! those where it runs a session without privilege separation (root
//! logins), a `kill -TERM <pid>` from a second channel too (the wrapper
//! reports its pid, which `exec` hands to the tool, as the first line of
//! stderr; that line is kept out of the tool's stderr). For [`Docker`] this
//! stops the `docker exec` client, which does not always stop the process
//! in the container.
//!
//! The remote login shell must understand POSIX single quotes (sh, bash,
//! dash, zsh, ksh do) and `sh` must be on its `PATH`.
//!
//! [`Local`]: super::Local

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use super::{tool_exit, Process, StderrTail, ToolCommand, Transport};
use crate::error::{BackupError, ErrorClass, Result};

/// The shell program that reports its pid on stderr (the tool's pid once it
/// `exec`s, for stopping it), reads the environment from stdin, then
/// becomes the tool (`"$@"`). It holds no single quote, so it quotes as it
/// is.
const WRAPPER: &str =
    "echo \"sluice-pid $$\" >&2; while IFS= read -r sluice_env && [ -n \"$sluice_env\" ]; do \
export \"$sluice_env\" || exit 126; done; unset sluice_env; exec \"$@\"";
/// The wrapper's first stderr line, before the pid.
const PID_PREFIX: &[u8] = b"sluice-pid ";
/// How much of the tool's stdout may wait for the caller to read it.
const STDOUT_BUFFER: usize = 64 * 1024;

/// How the transport logs in. `Debug` never prints the secrets.
#[derive(Clone)]
pub enum SshAuth {
    Password(String),
    /// An OpenSSH private key in its text form (`-----BEGIN OPENSSH
    /// PRIVATE KEY-----`, or PEM), with its passphrase when encrypted.
    PrivateKey {
        pem: String,
        passphrase: Option<String>,
    },
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshAuth::Password(_) => f.write_str("Password(…)"),
            SshAuth::PrivateKey { passphrase, .. } => f
                .debug_struct("PrivateKey")
                .field("pem", &"…")
                .field("passphrase", &passphrase.as_ref().map(|_| "…"))
                .finish(),
        }
    }
}

/// Where and how to connect; see [`SshConfig::new`] for the defaults.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: SshAuth,
    /// The most connecting and authenticating may take.
    pub connect_timeout: Duration,
    /// The server's host key fingerprint, `SHA256:…` (OpenSSH's form).
    /// `None` trusts the first key presented (see [`Ssh::seen_host_key`]).
    pub expected_host_key: Option<String>,
}

impl SshConfig {
    /// Port 22, a 15 s connect timeout, no expected host key yet.
    pub fn new(host: impl Into<String>, username: impl Into<String>, auth: SshAuth) -> Self {
        Self {
            host: host.into(),
            port: 22,
            username: username.into(),
            auth,
            connect_timeout: Duration::from_secs(15),
            expected_host_key: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn expected_host_key(mut self, fingerprint: impl Into<String>) -> Self {
        self.expected_host_key = Some(fingerprint.into());
        self
    }
}

enum Credentials {
    Password(String),
    Key(Arc<PrivateKey>),
}

/// Runs tools on another host over SSH.
pub struct Ssh {
    host: String,
    port: u16,
    username: String,
    credentials: Credentials,
    connect_timeout: Duration,
    expected_host_key: Option<String>,
    seen_host_key: Arc<Mutex<Option<String>>>,
    connection: tokio::sync::Mutex<Option<Arc<Handle<HostKeyCheck>>>>,
}

impl fmt::Debug for Ssh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ssh")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("expected_host_key", &self.expected_host_key)
            .finish_non_exhaustive()
    }
}

impl Ssh {
    /// Checks the configuration (the private key decodes with its
    /// passphrase, the expected fingerprint looks like one) without
    /// connecting: the first spawn connects.
    pub fn new(config: SshConfig) -> Result<Self> {
        let credentials = match config.auth {
            SshAuth::Password(p) => Credentials::Password(p),
            SshAuth::PrivateKey { pem, passphrase } => {
                let key = russh::keys::decode_secret_key(&pem, passphrase.as_deref())
                    .map_err(|e| BackupError::Invalid(format!("ssh private key: {e}")))?;
                Credentials::Key(Arc::new(key))
            }
        };
        let expected_host_key = match config.expected_host_key {
            Some(f) => {
                let f = f.trim();
                if !f.starts_with("SHA256:") || f.len() <= "SHA256:".len() {
                    return Err(BackupError::Invalid(format!(
                        "ssh host key fingerprint {f:?} (expected OpenSSH's SHA256:… form)"
                    )));
                }
                Some(f.trim_end_matches('=').to_owned())
            }
            None => None,
        };
        if config.host.is_empty() || config.username.is_empty() {
            return Err(BackupError::Invalid("ssh host or username (empty)".into()));
        }
        Ok(Self {
            host: config.host,
            port: config.port,
            username: config.username,
            credentials,
            connect_timeout: config.connect_timeout,
            expected_host_key,
            seen_host_key: Arc::new(Mutex::new(None)),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The SHA-256 fingerprint (`SHA256:…`) of the host key the server
    /// presented on the last connection, once one was attempted: what a
    /// caller stores to pin the key after a first, trusting connection.
    pub fn seen_host_key(&self) -> Option<String> {
        self.seen_host_key.lock().ok().and_then(|s| s.clone())
    }

    /// Connects and authenticates now (unless already connected): the
    /// check behind a server's "test connection".
    pub async fn connect(&self) -> Result<()> {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|h| !h.is_closed()) {
            return Ok(());
        }
        *slot = Some(Arc::new(self.handshake().await?));
        Ok(())
    }

    /// The command line the remote host runs (and `ps` shows) for `cmd`:
    /// the wrapper and the quoted program and arguments, no environment.
    pub fn command_line(&self, cmd: &ToolCommand) -> String {
        wrapped(std::iter::once(&cmd.program).chain(&cmd.args))
    }

    fn target(&self) -> String {
        format!("{}@{}:{}", self.username, self.host, self.port)
    }

    fn error(&self, message: impl Into<String>, class: ErrorClass) -> BackupError {
        BackupError::Ssh {
            host: self.target(),
            message: message.into(),
            class,
        }
    }

    /// What a russh error means for a retry.
    fn russh_error(&self, e: russh::Error) -> BackupError {
        use russh::Error as E;
        let class = match &e {
            E::NoCommonAlgo { .. }
            | E::UnknownAlgo
            | E::Version
            | E::WrongServerSig
            | E::NoAuthMethod
            | E::UnsupportedAuthMethod
            | E::CouldNotReadKey
            | E::Keys(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        };
        self.error(e.to_string(), class)
    }

    async fn handshake(&self) -> Result<Handle<HostKeyCheck>> {
        let presented = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            expected: self.expected_host_key.clone(),
            seen: Arc::clone(&self.seen_host_key),
            presented: Arc::clone(&presented),
        };
        let config = Arc::new(client::Config {
            // A dead peer is noticed within about 90 s of silence, while a
            // tool that prints nothing for hours (a big restore) is fine.
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..Default::default()
        });
        let attempt = async {
            let mut handle = client::connect(config, (self.host.as_str(), self.port), check)
                .await
                .map_err(|e| match (&e, self.mismatch(&presented)) {
                    (russh::Error::UnknownKey, Some(mismatch)) => mismatch,
                    _ => self.russh_error(e),
                })?;
            let auth = match &self.credentials {
                Credentials::Password(p) => {
                    handle
                        .authenticate_password(self.username.as_str(), p.as_str())
                        .await
                }
                Credentials::Key(key) => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| self.russh_error(e))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            self.username.as_str(),
                            PrivateKeyWithHashAlg::new(Arc::clone(key), hash),
                        )
                        .await
                }
            }
            .map_err(|e| self.russh_error(e))?;
            if !auth.success() {
                return Err(BackupError::SshAuthRefused {
                    user: self.username.clone(),
                    host: format!("{}:{}", self.host, self.port),
                });
            }
            Ok(handle)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(self.error(
                format!(
                    "connection timed out after {} ms",
                    self.connect_timeout.as_millis()
                ),
                ErrorClass::Transient,
            )),
        }
    }

    fn mismatch(&self, presented: &Mutex<Option<String>>) -> Option<BackupError> {
        let presented = presented.lock().ok()?.clone()?;
        Some(BackupError::HostKeyMismatch {
            host: format!("{}:{}", self.host, self.port),
            expected: self.expected_host_key.clone().unwrap_or_default(),
            presented,
        })
    }

    /// A new session channel, on the kept connection when it still works,
    /// and that connection.
    async fn channel(&self) -> Result<(russh::Channel<Msg>, Arc<Handle<HostKeyCheck>>)> {
        let mut slot = self.connection.lock().await;
        if let Some(handle) = slot.as_ref().filter(|h| !h.is_closed()) {
            match handle.channel_open_session().await {
                Ok(c) => return Ok((c, Arc::clone(handle))),
                Err(e) => tracing::debug!(error = %e, "ssh connection lost, reconnecting"),
            }
        }
        *slot = None;
        let handle = self.handshake().await?;
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| self.russh_error(e))?;
        let handle = Arc::new(handle);
        *slot = Some(Arc::clone(&handle));
        Ok((channel, handle))
    }

    /// Runs `argv` (wrapped) with `cmd`'s environment and pipes.
    async fn run(&self, argv: Vec<String>, cmd: &ToolCommand) -> Result<Process> {
        let preamble = env_preamble(&cmd.env)?;
        let line = wrapped(&argv);
        tracing::debug!(command = ?cmd, target = %self.target(), "starting tool over ssh");
        let (channel, connection) = self.channel().await?;
        channel
            .exec(true, line)
            .await
            .map_err(|e| self.russh_error(e))?;
        let (read, write) = channel.split();
        write
            .data_bytes(preamble)
            .await
            .map_err(|e| self.russh_error(e))?;
        let (stdin, stdin_dropped) = if cmd.stdin {
            let (tx, rx) = oneshot::channel();
            let w = ChannelStdin {
                inner: Box::pin(write.make_writer()),
                dropped: Some(tx),
            };
            (
                Some(Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>),
                Some(rx),
            )
        } else {
            write.eof().await.map_err(|e| self.russh_error(e))?;
            (None, None)
        };
        let (stdout, stdout_sink) = if cmd.stdout {
            let (w, r) = tokio::io::duplex(STDOUT_BUFFER);
            (
                Some(Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                Some(w),
            )
        } else {
            (None, None)
        };
        let (stderr, stderr_sink) = if cmd.stderr {
            let (w, r) = tokio::io::duplex(STDOUT_BUFFER);
            (
                Some(Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                Some(w),
            )
        } else {
            (None, None)
        };
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let pump = tokio::spawn(pump(
            read,
            write,
            Sinks {
                stdout: stdout_sink,
                stderr: stderr_sink,
            },
            stdin_dropped,
            cancel_rx,
            Remote {
                tool: cmd.program.clone(),
                target: self.target(),
                connection,
            },
        ));
        let exit = Box::pin(async move {
            // Dropping this future before the tool ended drops the sender,
            // which tells the pump to stop the tool.
            let _cancel = cancel_tx;
            pump.await.unwrap_or_else(|e| {
                Err(BackupError::Io(std::io::Error::other(format!(
                    "ssh channel task: {e}"
                ))))
            })
        });
        Ok(Process {
            stdin,
            stdout,
            stderr,
            exit,
        })
    }
}

impl Transport for Ssh {
    fn spawn<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<Process>> {
        let argv = std::iter::once(&cmd.program)
            .chain(&cmd.args)
            .cloned()
            .collect();
        Box::pin(self.run(argv, cmd))
    }
}

/// Runs tools inside a container on an SSH host with `docker exec`.
#[derive(Debug, Clone)]
pub struct Docker {
    ssh: Arc<Ssh>,
    container: String,
}

impl Docker {
    /// `container` is a name or id (`[A-Za-z0-9][A-Za-z0-9_.-]*`). Pass an
    /// `Arc<Ssh>` to share one connection with an [`Ssh`] transport.
    pub fn new(ssh: impl Into<Arc<Ssh>>, container: impl Into<String>) -> Result<Self> {
        let container = container.into();
        let ok = container
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && container
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(BackupError::Invalid(format!(
                "container name {container:?}"
            )));
        }
        Ok(Self {
            ssh: ssh.into(),
            container,
        })
    }

    /// The SSH transport underneath (for [`Ssh::seen_host_key`]).
    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    /// The command line the remote host runs (and `ps` shows) for `cmd`.
    pub fn command_line(&self, cmd: &ToolCommand) -> String {
        wrapped(self.argv(cmd))
    }

    fn argv(&self, cmd: &ToolCommand) -> Vec<String> {
        let mut argv = vec!["docker".to_owned(), "exec".to_owned(), "-i".to_owned()];
        for (name, _) in &cmd.env {
            argv.push("-e".to_owned());
            argv.push(name.clone());
        }
        argv.push(self.container.clone());
        argv.push(cmd.program.clone());
        argv.extend(cmd.args.iter().cloned());
        argv
    }
}

impl Transport for Docker {
    fn spawn<'a>(&'a self, cmd: &'a ToolCommand) -> BoxFuture<'a, Result<Process>> {
        Box::pin(self.ssh.run(self.argv(cmd), cmd))
    }
}

/// POSIX shell single quoting: `'…'`, each `'` written `'\''`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `sh -c '<wrapper>' sluice '<argv0>' '<argv1>' …`
fn wrapped<S: AsRef<str>>(argv: impl IntoIterator<Item = S>) -> String {
    let mut line = format!("sh -c {} sluice", shell_quote(WRAPPER));
    for a in argv {
        line.push(' ');
        line.push_str(&shell_quote(a.as_ref()));
    }
    line
}

/// `NAME=value` lines and the empty line that ends them.
fn env_preamble(env: &[(String, String)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (name, value) in env {
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(BackupError::Invalid(format!(
                "environment variable name {name:?}"
            )));
        }
        if value.contains(['\n', '\0']) {
            return Err(BackupError::Invalid(format!(
                "value of {name}: a newline or NUL cannot be passed over ssh"
            )));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Ok(out)
}

/// Checks the server's host key against the expected fingerprint, or
/// trusts it, and records what was presented.
struct HostKeyCheck {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    /// Set only on a mismatch.
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(c) => c.public_key().fingerprint(HashAlg::Sha256),
        }
        .to_string();
        let fingerprint = fingerprint.trim_end_matches('=').to_owned();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint.clone());
        }
        match &self.expected {
            Some(expected) if *expected != fingerprint => {
                if let Ok(mut p) = self.presented.lock() {
                    *p = Some(fingerprint);
                }
                Ok(false)
            }
            _ => Ok(true),
        }
    }
}

/// The tool's stdin: the channel's data stream. Shutting it down sends EOF;
/// dropping it without a shutdown asks the pump to send EOF, as closing a
/// child's stdin pipe would.
struct ChannelStdin {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    dropped: Option<oneshot::Sender<()>>,
}

impl AsyncWrite for ChannelStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = self.inner.as_mut().poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = r {
            // EOF sent: dropping the sender unsent tells the pump so.
            self.dropped = None;
        }
        r
    }
}

impl Drop for ChannelStdin {
    fn drop(&mut self) {
        if let Some(tx) = self.dropped.take() {
            let _ = tx.send(());
        }
    }
}

enum Exit {
    Code(u32),
    Signal(String),
}

/// Which tool runs where, for its verdict and for stopping it.
struct Remote {
    tool: String,
    target: String,
    connection: Arc<Handle<HostKeyCheck>>,
}

/// Where the tool's output goes: the caller's pipes, when it asked.
struct Sinks {
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
}

/// Moves the channel's messages: data to the caller's stdout pipe (or
/// nowhere), extended data (stderr) to the caller's stderr pipe or into
/// the kept tail, and the exit status or signal into the tool's verdict.
async fn pump(
    mut read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
    sinks: Sinks,
    mut stdin_dropped: Option<oneshot::Receiver<()>>,
    mut cancel: oneshot::Receiver<()>,
    remote: Remote,
) -> Result<()> {
    let Remote {
        tool,
        target,
        connection,
    } = remote;
    let Sinks {
        mut stdout,
        stderr: mut stderr_sink,
    } = sinks;
    let mut tail = StderrTail::default();
    let mut pid = PidLine::default();
    let mut exit = None;
    let mut refused = false;
    loop {
        let stdin_closed = async {
            match stdin_dropped.as_mut() {
                Some(rx) => rx.await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = read.wait() => match msg {
                None | Some(ChannelMsg::Close) => break,
                Some(ChannelMsg::Data { data }) => {
                    if let Some(out) = stdout.as_mut() {
                        if out.write_all(&data).await.is_err() {
                            // The caller stopped reading: discard the rest.
                            stdout = None;
                        }
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    let mut err = Vec::new();
                    pid.feed(&data, &mut err);
                    match stderr_sink.as_mut() {
                        Some(sink) => {
                            if sink.write_all(&err).await.is_err() {
                                stderr_sink = None;
                            }
                        }
                        None => tail.push(&err),
                    }
                }
                Some(ChannelMsg::Eof) => stdout = None,
                Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Exit::Code(exit_status)),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    exit = Some(Exit::Signal(format!("{signal_name:?}")));
                }
                Some(ChannelMsg::Failure) => refused = true,
                Some(_) => {}
            },
            dropped = stdin_closed => {
                stdin_dropped = None;
                if dropped {
                    let _ = write.eof().await;
                }
            }
            _ = &mut cancel => {
                // The Process was dropped before the tool ended: stop it.
                // OpenSSH refuses `signal` requests where it runs sessions
                // without privilege separation (root logins), so the tool
                // is also killed by pid from a second channel.
                let _ = write.signal(Sig::TERM).await;
                if let Some(pid) = pid.pid {
                    kill(&connection, pid).await;
                }
                let _ = write.close().await;
                return Ok(());
            }
        }
    }
    drop(stdout);
    let mut rest = Vec::new();
    pid.finish(&mut rest);
    match stderr_sink.as_mut() {
        Some(sink) => {
            let _ = sink.write_all(&rest).await;
        }
        None => tail.push(&rest),
    }
    drop(stderr_sink);
    let stderr = tail.finish();
    match exit {
        Some(Exit::Code(code)) => tool_exit(
            tool,
            Some(i32::try_from(code).unwrap_or(i32::MAX)),
            format!("exit status: {code}"),
            false,
            stderr,
        ),
        Some(Exit::Signal(sig)) => tool_exit(tool, None, format!("signal: {sig}"), true, stderr),
        None if refused => Err(BackupError::Ssh {
            host: target,
            message: format!("the server refused to run {tool}"),
            class: ErrorClass::Permanent,
        }),
        // The connection dropped under the tool: transient, like a signal.
        None => tool_exit(
            tool,
            None,
            "the ssh channel closed without an exit status".into(),
            true,
            stderr,
        ),
    }
}

/// Picks the wrapper's `sluice-pid N` line out of the start of stderr
/// (after whatever the login shell printed first) and passes the rest on.
#[derive(Default)]
struct PidLine {
    buf: Vec<u8>,
    done: bool,
    pid: Option<u32>,
}

impl PidLine {
    /// Moves what belongs to the tool's stderr into `tail`.
    fn feed(&mut self, mut data: &[u8], tail: &mut Vec<u8>) {
        while !self.done {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                self.buf.extend_from_slice(data);
                if self.buf.len() > 4096 {
                    self.finish(tail);
                }
                return;
            };
            self.buf.extend_from_slice(&data[..nl]);
            data = &data[nl + 1..];
            let line = std::mem::take(&mut self.buf);
            match line.strip_prefix(PID_PREFIX) {
                Some(n) => {
                    self.pid = std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| n.trim().parse().ok());
                    self.done = true;
                }
                // Not ours (a login script's output): the tool's, as it were.
                None => {
                    tail.extend_from_slice(&line);
                    tail.push(b'\n');
                }
            }
        }
        tail.extend_from_slice(data);
    }

    /// Gives up looking; what was held back goes to `tail`.
    fn finish(&mut self, tail: &mut Vec<u8>) {
        self.done = true;
        tail.append(&mut self.buf);
    }
}

/// Sends SIGTERM to `pid` on the remote host, from a channel of its own.
async fn kill(connection: &Handle<HostKeyCheck>, pid: u32) {
    let Ok(mut channel) = connection.channel_open_session().await else {
        return;
    };
    if channel
        .exec(false, format!("kill -TERM {pid}"))
        .await
        .is_ok()
    {
        let _ = channel.eof().await;
        let wait = async { while channel.wait().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh() -> Ssh {
        Ssh::new(SshConfig::new(
            "db.example",
            "backup",
            SshAuth::Password("pw".into()),
        ))
        .unwrap()
    }

    #[test]
    fn quotes_like_a_posix_shell() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME `x` \"y\" \\"), r#"'$HOME `x` "y" \'"#);
    }

    #[test]
    fn quoted_arguments_survive_a_real_shell() {
        let args = [
            "a b", "it's", "$HOME", "`id`", "\"q\"", "x\ny", "", "*", "\\n",
        ];
        let line = format!(
            "printf '%s\\0' {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        let got: Vec<String> = out
            .stdout
            .split(|&b| b == 0)
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        assert_eq!(&got[..args.len()], &args[..]);
    }

    #[test]
    fn secrets_stay_off_the_command_line() {
        let cmd = ToolCommand::new("pg_dump")
            .arg("--dbname")
            .arg("it's")
            .env("PGPASSWORD", "s3cret-pw");
        let line = ssh().command_line(&cmd);
        assert!(!line.contains("s3cret-pw"), "{line}");
        assert!(line.starts_with("sh -c '"), "{line}");
        assert!(
            line.ends_with(r" sluice 'pg_dump' '--dbname' 'it'\''s'"),
            "{line}"
        );
        assert_eq!(
            env_preamble(&cmd.env).unwrap(),
            b"PGPASSWORD=s3cret-pw\n\n".to_vec()
        );
    }

    #[test]
    fn docker_exec_names_the_variables_only() {
        let docker = Docker::new(ssh(), "pg-main_1").unwrap();
        let cmd = ToolCommand::new("mariadb-dump")
            .arg("--single-transaction")
            .env("MYSQL_PWD", "s3cret-pw")
            .env("LC_ALL", "C");
        assert_eq!(
            docker.argv(&cmd),
            [
                "docker",
                "exec",
                "-i",
                "-e",
                "MYSQL_PWD",
                "-e",
                "LC_ALL",
                "pg-main_1",
                "mariadb-dump",
                "--single-transaction"
            ]
        );
        let line = docker.command_line(&cmd);
        assert!(!line.contains("s3cret-pw"), "{line}");
        assert!(
            line.ends_with(
                " sluice 'docker' 'exec' '-i' '-e' 'MYSQL_PWD' '-e' 'LC_ALL' 'pg-main_1' \
                 'mariadb-dump' '--single-transaction'"
            ),
            "{line}"
        );
    }

    #[test]
    fn refuses_what_cannot_travel_safely() {
        for bad in ["", "-rm", "a b", "x;y", "$(id)"] {
            assert!(Docker::new(ssh(), bad).is_err(), "{bad:?}");
        }
        let newline = vec![("PGPASSWORD".to_owned(), "a\nb".to_owned())];
        assert!(env_preamble(&newline).is_err());
        let name = vec![("A=B".to_owned(), "x".to_owned())];
        assert!(env_preamble(&name).is_err());
        let bad_key = SshAuth::PrivateKey {
            pem: "not a key".into(),
            passphrase: None,
        };
        let err = Ssh::new(SshConfig::new("h", "u", bad_key)).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        let bad_fp =
            SshConfig::new("h", "u", SshAuth::Password("p".into())).expected_host_key("MD5:aa:bb");
        assert!(Ssh::new(bad_fp).is_err());
    }

    #[test]
    fn the_wrapper_exports_then_hands_over_stdin() {
        // The same wrapper, run by a local sh: the environment comes from
        // the first lines, the tool reads exactly what follows.
        let line = wrapped(["sh", "-c", "printf '%s|%s|' \"$A\" \"$B\"; cat"]);
        let mut child = std::process::Command::new("sh")
            .args(["-c", &line])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let env = vec![
            ("A".to_owned(), " x 'y' \\n $Z ".to_owned()),
            ("B".to_owned(), String::new()),
        ];
        let mut input = env_preamble(&env).unwrap();
        input.extend_from_slice(b"C=not env\n\nrest\\ of stdin\n");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            " x 'y' \\n $Z ||C=not env\n\nrest\\ of stdin\n"
        );
    }

    #[test]
    fn pid_line_is_taken_out_of_stderr() {
        let mut pid = PidLine::default();
        let mut tail = Vec::new();
        pid.feed(b"motd\nsluice-p", &mut tail);
        pid.feed(b"id 4242\npg_dump: err", &mut tail);
        pid.feed(b"or\n", &mut tail);
        pid.finish(&mut tail);
        assert_eq!(pid.pid, Some(4242));
        assert_eq!(tail, b"motd\npg_dump: error\n");
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = SshAuth::PrivateKey {
            pem: "-----BEGIN KEY-----".into(),
            passphrase: Some("open-sesame-x".into()),
        };
        let text = format!("{:?} {:?}", auth, SshAuth::Password("pw-secret".into()));
        assert!(
            !text.contains("BEGIN")
                && !text.contains("open-sesame-x")
                && !text.contains("pw-secret")
        );
    }
}
