//! A backup: the engine's dump tool streams into compression, then
//! encryption, then SHA-256 and the object store, one chunk at a time.
//!
//! Memory is bounded by construction: one 64 KiB chunk between the stages,
//! the compressor's window, and at most [`crate::store`]'s parts in flight.
//! The upload is committed only after the dump tool exited successfully; on
//! any failure it is aborted and nothing appears under the object's name.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tracing::Instrument;

use crate::compression::Compression;
use crate::crypto::{Keyring, Sealer, CHUNK};
use crate::engine::{validate_database_name, Connection, Engine};
use crate::error::{BackupError, Result};
use crate::store::BackupStore;
use crate::transport::Transport;

/// Called with the number of dump bytes read from the tool so far (before
/// compression), after every read; callers throttle what they publish.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// What to back up and how.
pub struct BackupRequest<'a> {
    pub engine: &'a dyn Engine,
    pub transport: &'a dyn Transport,
    pub connection: &'a Connection,
    pub database: &'a str,
    pub compression: Compression,
    /// Encrypt under the keyring's current master key when set.
    pub encryption: Option<&'a Keyring>,
    /// Name of the object to write (e.g. `tenant-1/backup-42.sql.zst`).
    pub object_key: &'a str,
    pub progress: Option<ProgressFn>,
}

/// What a completed backup stored.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub object_key: String,
    /// `file:///…` for the local store, the store's own URL otherwise.
    pub storage_url: String,
    /// Exact length of the stored object.
    pub size_bytes: u64,
    /// `sha256:` and 64 lowercase hex digits, over the stored object's bytes.
    pub checksum: String,
    /// Bytes the dump tool wrote (before compression).
    pub dump_bytes: u64,
    pub duration: Duration,
}

/// Counts what passes through and reports it.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: Option<ProgressFn>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let total = self.count.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(p) = &self.progress {
                p(total);
            }
        }
        r
    }
}

/// Writes the stored bytes, hashing and counting them.
struct Sink {
    writer: BufWriter,
    hasher: Sha256,
    size: u64,
}

impl Sink {
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.writer.write_all(bytes).await?;
        Ok(())
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
async fn read_full(r: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Runs one backup to completion.
pub async fn run_backup(store: &BackupStore, req: BackupRequest<'_>) -> Result<BackupOutcome> {
    let span = tracing::info_span!("backup", engine = ?req.engine.kind(), database = %req.database, object = %req.object_key);
    backup(store, req).instrument(span).await
}

async fn backup(store: &BackupStore, req: BackupRequest<'_>) -> Result<BackupOutcome> {
    validate_database_name(req.database)?;
    let started = Instant::now();

    let writer = store.writer(req.object_key)?;
    let mut sink = Sink {
        writer,
        hasher: Sha256::new(),
        size: 0,
    };
    let cmd = req.engine.dump_command(req.connection, req.database);
    let mut process = req.transport.spawn(&cmd).await?;
    let stdout = process
        .stdout
        .take()
        .ok_or_else(|| BackupError::Invalid("dump command without stdout".into()))?;
    let dump_bytes = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: stdout,
        count: Arc::clone(&dump_bytes),
        progress: req.progress.clone(),
    };
    let mut reader = req.compression.encoder(counted);

    let streamed = stream(&mut reader, &mut sink, req.encryption).await;
    drop(reader);
    // The tool's verdict comes first: a dump that ended early because the
    // tool failed is not a backup, whatever the stream looked like.
    let exited = process.exit.await;
    let result = match (exited, streamed) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => sink.writer.shutdown().await.map_err(BackupError::from),
    };
    if let Err(e) = result {
        if let Err(abort) = sink.writer.abort().await {
            tracing::warn!(error = %abort, "aborting the upload failed");
        }
        tracing::warn!(error = %e, "backup failed");
        return Err(e);
    }
    let outcome = BackupOutcome {
        object_key: req.object_key.to_owned(),
        storage_url: store.url(req.object_key),
        size_bytes: sink.size,
        checksum: format!("sha256:{}", hex::encode(sink.hasher.finalize())),
        dump_bytes: dump_bytes.load(Ordering::Relaxed),
        duration: started.elapsed(),
    };
    tracing::info!(
        size_bytes = outcome.size_bytes,
        dump_bytes = outcome.dump_bytes,
        duration_ms = outcome.duration.as_millis() as u64,
        "backup stored"
    );
    Ok(outcome)
}

async fn stream(
    reader: &mut (impl AsyncRead + Unpin),
    sink: &mut Sink,
    encryption: Option<&Keyring>,
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    match encryption {
        None => loop {
            let n = read_full(reader, &mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            sink.write(&buf[..n]).await?;
        },
        Some(keyring) => {
            let mut sealer = Sealer::new(keyring)?;
            sink.write(sealer.header()).await?;
            loop {
                let n = read_full(reader, &mut buf).await?;
                if n < CHUNK {
                    let last = sealer.seal_last(&buf[..n])?;
                    return sink.write(&last).await;
                }
                let sealed = sealer.seal_next(&buf)?;
                sink.write(&sealed).await?;
            }
        }
    }
}
