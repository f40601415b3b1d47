//! A restore: fetch → verify checksum → decrypt → decompress → replay,
//! into a scratch database swapped in only when everything succeeded.
//!
//! 1. The stored object is read once end to end and its SHA-256 compared
//!    with the checksum recorded at backup time; for an encrypted object the
//!    header is checked too (format, and that the keyring unwraps its data
//!    key). Nothing in the target has been touched yet: on a mismatch or a
//!    wrong key the target is as it was, and a missing target is not created.
//! 2. A scratch database is created next to the target and the object is
//!    streamed again, decrypted (every chunk authenticated), decompressed and
//!    piped into the engine's restore tool. The second pass is hashed too, so
//!    an object that changed between the passes is refused as well.
//! 3. Only when the tool succeeded and the second hash matches does the
//!    engine swap the scratch database in (see each engine for how). On any
//!    failure the scratch database is dropped and the target is untouched.
//!
//! With [`RestoreRequest::masking`], step 2 runs the engine's
//! [`MaskedRestore`] instead: the decompressed dump goes (through the
//! engine's script tool when it is not SQL text, e.g. `pg_restore
//! --file=-`) into the masking filter in this process and from there into
//! the replay tool, so unmasked values of matched columns never reach the
//! database. Every stage runs concurrently over pipes with 64 KiB buffers.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::backup::ProgressFn;
use crate::compression::Compression;
use crate::crypto::{check_header, Keyring, Opener, CHUNK};
use crate::engine::{validate_database_name, Connection, Engine, MaskedRestore};
use crate::error::{BackupError, Result};
use crate::mask::{self, MaskError, MaskingRules};
use crate::store::BackupStore;
use crate::transport::Transport;

/// What to restore and where.
pub struct RestoreRequest<'a> {
    pub engine: &'a dyn Engine,
    pub transport: &'a dyn Transport,
    pub connection: &'a Connection,
    /// Created when missing; replaced as a whole when present.
    pub target_database: &'a str,
    pub object_key: &'a str,
    /// `sha256:<hex>` as the backup recorded it.
    pub expected_checksum: &'a str,
    pub compression: Compression,
    /// Required when the backup was encrypted.
    pub decryption: Option<&'a Keyring>,
    /// Called with the stored bytes read so far in the restoring pass.
    pub progress: Option<ProgressFn>,
    /// Mask matched columns while the data streams into the database
    /// (`None`: restore every value as it was).
    pub masking: Option<&'a MaskingRules>,
}

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// Bytes of the stored object replayed.
    pub object_bytes: u64,
    pub duration: Duration,
}

/// A fresh database name `<prefix>_<12 hex>` for scratch and holding
/// databases.
pub(crate) fn side_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

fn parse_checksum(s: &str) -> Result<String> {
    let hex = s
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            BackupError::Invalid(format!("checksum {s:?}: expected sha256:<64 hex digits>"))
        })?;
    Ok(hex.to_ascii_lowercase())
}

/// Runs one restore to completion.
pub async fn run_restore(store: &BackupStore, req: RestoreRequest<'_>) -> Result<RestoreOutcome> {
    let span = tracing::info_span!("restore", engine = ?req.engine.kind(), target = %req.target_database, object = %req.object_key);
    restore(store, req).instrument(span).await
}

async fn restore(store: &BackupStore, req: RestoreRequest<'_>) -> Result<RestoreOutcome> {
    validate_database_name(req.target_database)?;
    let expected = parse_checksum(req.expected_checksum)?;
    let started = Instant::now();

    verify(store, &req, &expected).await?;

    let scratch = side_name("sluice_restore");
    req.engine
        .create_database(req.transport, req.connection, &scratch)
        .await?;
    let result = async {
        let object_bytes = replay(store, &req, &scratch, &expected).await?;
        req.engine
            .swap_in(req.transport, req.connection, &scratch, req.target_database)
            .await?;
        Ok(object_bytes)
    }
    .await;
    match result {
        Ok(object_bytes) => {
            let outcome = RestoreOutcome {
                object_bytes,
                duration: started.elapsed(),
            };
            tracing::info!(
                object_bytes,
                duration_ms = outcome.duration.as_millis() as u64,
                "restore swapped in"
            );
            Ok(outcome)
        }
        Err(e) => {
            if let Err(drop_err) = req
                .engine
                .drop_database(req.transport, req.connection, &scratch)
                .await
            {
                tracing::warn!(database = %scratch, error = %drop_err, "could not drop the scratch database");
            }
            tracing::warn!(error = %e, "restore failed; target unchanged");
            Err(e)
        }
    }
}

/// Pass 1: the whole object against its checksum, and the header of an
/// encrypted one against the keyring.
async fn verify(store: &BackupStore, req: &RestoreRequest<'_>, expected: &str) -> Result<()> {
    let mut stream = store.read(req.object_key).await?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut header_checked = req.decryption.is_none();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        hasher.update(&piece);
        if !header_checked && head.len() < 512 {
            head.extend_from_slice(&piece[..piece.len().min(512 - head.len())]);
        }
        if !header_checked {
            if let Some(keyring) = req.decryption {
                header_checked = check_header(keyring, &head)?;
            }
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(BackupError::ChecksumMismatch {
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    if !header_checked {
        return Err(BackupError::Decrypt(
            "the object is shorter than an encryption header".into(),
        ));
    }
    Ok(())
}

/// Pass 2: decrypt, decompress and pipe into the restore tool running
/// against `scratch`. Returns the stored bytes read.
async fn replay(
    store: &BackupStore,
    req: &RestoreRequest<'_>,
    scratch: &str,
    expected: &str,
) -> Result<u64> {
    if let Some(rules) = req.masking {
        let plan = req.engine.masked_restore(req.connection, scratch);
        return replay_masked(store, req, plan, rules, expected).await;
    }
    let cmd = req.engine.restore_command(req.connection, scratch);
    let mut process = req.transport.spawn(&cmd).await?;
    let stdin = process
        .stdin
        .take()
        .ok_or_else(|| BackupError::Invalid("restore command without stdin".into()))?;
    let mut decoder = req.compression.decoder(stdin);
    let fed = feed(store, req, &mut decoder).await;
    // Closing stdin (dropping the decoder) tells the tool the dump ended.
    drop(decoder);
    let exited = process.exit.await;
    // When the tool failed, its message explains a broken pipe better than
    // the broken pipe does; when the stream failed, that is the cause.
    let (read, actual) = match (fed, exited) {
        (Err(e @ BackupError::Io(_)), Err(tool)) => {
            tracing::debug!(error = %e, "stream ended by the tool's failure");
            return Err(tool);
        }
        (Err(e), _) => return Err(e),
        (Ok(_), Err(tool)) => return Err(tool),
        (Ok(v), Ok(())) => v,
    };
    if actual != expected {
        return Err(BackupError::ChecksumMismatch {
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(read)
}

/// Pass 2 with masking: feed → [script tool] → filter → replay tool, all
/// at once. Returns the stored bytes read.
async fn replay_masked(
    store: &BackupStore,
    req: &RestoreRequest<'_>,
    plan: MaskedRestore,
    rules: &MaskingRules,
    expected: &str,
) -> Result<u64> {
    let mut filter = mask::filter(plan.dialect, rules)?;
    let mut replay = req.transport.spawn(&plan.replay).await?;
    let mut replay_in = replay
        .stdin
        .take()
        .ok_or_else(|| BackupError::Invalid("replay command without stdin".into()))?;
    let (feed_into, mut sql, script): (
        Box<dyn AsyncWrite + Send + Unpin>,
        Box<dyn AsyncRead + Send + Unpin>,
        _,
    ) = match &plan.script {
        Some(cmd) => {
            let mut p = req.transport.spawn(cmd).await?;
            let stdin = p
                .stdin
                .take()
                .ok_or_else(|| BackupError::Invalid("script command without stdin".into()))?;
            let stdout = p
                .stdout
                .take()
                .ok_or_else(|| BackupError::Invalid("script command without stdout".into()))?;
            (stdin, stdout, Some(p))
        }
        None => {
            let (w, r) = tokio::io::duplex(CHUNK);
            (Box::new(w), Box::new(r), None)
        }
    };
    let mut decoder = req.compression.decoder(feed_into);
    let feeding = async {
        let fed = feed(store, req, &mut decoder).await;
        // Closing the pipe tells the next stage the dump ended.
        drop(decoder);
        fed
    };
    let pumping = async {
        let pumped = mask::pump(filter.as_mut(), &mut *sql, &mut *replay_in).await;
        drop(sql);
        pumped
    };
    let (fed, pumped) = tokio::join!(feeding, pumping);
    // When this side stopped the stream (a masking error, a truncated
    // script, a decryption failure), the replay tool is killed before it
    // sees the end of its input, so it never commits a partial replay (the
    // scratch database would be dropped anyway).
    let ours = |e: Option<&BackupError>| e.is_some_and(|e| !matches!(e, BackupError::Io(_)));
    let replayed = if ours(fed.as_ref().err()) || ours(pumped.as_ref().err()) {
        drop(replay);
        drop(replay_in);
        Ok(())
    } else {
        drop(replay_in);
        replay.exit.await
    };
    let scripted = match script {
        Some(p) => p.exit.await,
        None => Ok(()),
    };
    // The first cause wins over its consequences: a stage that stopped
    // makes the next one see a broken pipe or an early end, and a replay
    // tool that failed makes the script tool die of SIGPIPE.
    let is_cause = |e: &BackupError| {
        !matches!(
            e,
            BackupError::Io(_) | BackupError::Mask(MaskError::Truncated)
        )
    };
    let (read, actual) = match (fed, pumped, replayed, scripted) {
        (Err(e), ..) if is_cause(&e) => return Err(e),
        (_, Err(e), ..) if is_cause(&e) => return Err(e),
        (_, _, Err(e), _) | (_, _, _, Err(e)) | (_, Err(e), ..) | (Err(e), ..) => return Err(e),
        (Ok(v), Ok(()), Ok(()), Ok(())) => v,
    };
    if actual != expected {
        return Err(BackupError::ChecksumMismatch {
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(read)
}

async fn feed(
    store: &BackupStore,
    req: &RestoreRequest<'_>,
    out: &mut Box<dyn AsyncWrite + Send + Unpin>,
) -> Result<(u64, String)> {
    let mut stream = store.read(req.object_key).await?;
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    let mut opener = req.decryption.map(Opener::new);
    let mut plain = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        hasher.update(&piece);
        read += piece.len() as u64;
        match &mut opener {
            None => write_decoded(out, &piece).await?,
            Some(o) => {
                o.feed(&piece, &mut |pt| plain.push(pt))?;
                for pt in plain.drain(..) {
                    write_decoded(out, &pt).await?;
                }
            }
        }
        if let Some(p) = &req.progress {
            p(read);
        }
    }
    if let Some(o) = opener {
        let last = o.finish()?;
        write_decoded(out, &last).await?;
    }
    out.shutdown().await.map_err(decode_error)?;
    Ok((read, hex::encode(hasher.finalize())))
}

async fn write_decoded(out: &mut Box<dyn AsyncWrite + Send + Unpin>, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes).await.map_err(decode_error)
}

/// A closed pipe means the restore tool stopped reading (its own error
/// explains why); any other write error comes from the decoder refusing its
/// input (zstd reports "Unknown frame descriptor" as `Other`, gzip
/// `InvalidData`).
fn decode_error(e: std::io::Error) -> BackupError {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | WriteZero => BackupError::Io(e),
        _ => BackupError::Decompress(e.to_string()),
    }
}
