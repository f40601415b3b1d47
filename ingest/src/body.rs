//! Reading a request body within its caps: the bytes on the wire are
//! limited while they arrive, and decompression (gzip, deflate, brotli,
//! zstd) stops at the
//! decompressed cap, so a zip bomb costs at most that much memory.
//!
//! Every byte held — as received, and as decompressed — also takes a
//! share of one [`Budget`] for the whole process: when concurrent requests
//! would hold more than it, the newcomer is refused (503) instead of
//! memory growing with the number of connections.

use std::io::Read;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::response::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    /// zlib-wrapped as HTTP's `deflate` says, or raw deflate as some
    /// clients send it.
    Deflate,
    Brotli,
    Zstd,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, Rejection> {
    let Some(v) = headers.get(http::header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Ok("" | "identity") => Ok(Encoding::Identity),
        Ok("gzip" | "x-gzip") => Ok(Encoding::Gzip),
        Ok("zstd") => Ok(Encoding::Zstd),
        Ok("deflate") => Ok(Encoding::Deflate),
        Ok("br") => Ok(Encoding::Brotli),
        _ => Err(Rejection::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "encoding",
            "unsupported Content-Encoding: use gzip, deflate, br, zstd or none",
        )),
    }
}

/// What a client whose body arrived too slowly is told.
pub const BODY_TIMEOUT_MESSAGE: &str = "request body did not arrive in time";

/// The refusal for a body that could not be read: a 408 when the
/// listener cut it off for arriving too slowly (an `io::ErrorKind::TimedOut`
/// error), a 400 otherwise.
fn unreadable(e: Box<dyn std::error::Error + Send + Sync>) -> Rejection {
    let timed_out = e
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        Rejection::new(
            http::StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            BODY_TIMEOUT_MESSAGE,
        )
    } else {
        Rejection::bad_request(format!("could not read body: {e}"))
    }
}

fn too_large(limit: usize) -> Rejection {
    Rejection::too_large(format!("request body exceeds {limit} bytes"))
}

/// The refusal when ingest holds all the work it may.
pub(crate) fn overloaded() -> Rejection {
    Rejection::unavailable("overloaded", "ingest is overloaded, retry later", 1)
}

/// Request bytes the whole process may hold at once.
#[derive(Clone, Debug)]
pub struct Budget {
    /// One permit per KiB.
    kib: Arc<Semaphore>,
}

/// A share of the [`Budget`], returned when dropped.
#[derive(Debug, Default)]
pub struct Held {
    permits: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            kib: Arc::new(Semaphore::new(kib)),
        }
    }

    /// Grows `held` to cover `bytes`; false when the budget has no room.
    fn cover(&self, held: &mut Held, bytes: usize) -> bool {
        if bytes <= held.bytes {
            return true;
        }
        let need = bytes.div_ceil(1024) - held.bytes.div_ceil(1024);
        let Ok(n) = u32::try_from(need) else {
            return false;
        };
        if n > 0 {
            match self.kib.clone().try_acquire_many_owned(n) {
                Ok(p) => match &mut held.permits {
                    Some(all) => all.merge(p),
                    None => held.permits = Some(p),
                },
                Err(_) => return false,
            }
        }
        held.bytes = bytes;
        true
    }
}

impl Default for Budget {
    /// 64 MiB.
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

/// A request body read whole, decompressed, with its share of the budget.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    _held: Held,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bodies above this size are decompressed off the async workers.
const INLINE_DECOMPRESS: usize = 64 * 1024;
/// Decompressed output is covered by the budget in steps of this size.
const STEP: usize = 256 * 1024;

fn decompress(
    enc: Encoding,
    raw: &[u8],
    limit: usize,
    budget: &Budget,
) -> Result<(Vec<u8>, Held), Rejection> {
    let mut held = Held::default();
    let mut reader: Box<dyn Read + '_> = match enc {
        Encoding::Identity => {
            if !budget.cover(&mut held, raw.len()) {
                return Err(overloaded());
            }
            return Ok((raw.to_vec(), held));
        }
        Encoding::Gzip => {
            // one member whose trailer states a size within the limit: the
            // fast path; anything else streams below
            if let Some(size) = crate::gunzip::stated_size(raw).filter(|s| *s <= limit) {
                if !budget.cover(&mut held, size) {
                    return Err(overloaded());
                }
                let mut out = vec![0u8; size];
                if crate::gunzip::one_member(raw, &mut out).is_some() {
                    return Ok((out, held));
                }
            }
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        }
        Encoding::Deflate if is_zlib(raw) => Box::new(flate2::read::ZlibDecoder::new(raw)),
        Encoding::Deflate => Box::new(flate2::read::DeflateDecoder::new(raw)),
        Encoding::Brotli => Box::new(brotli_decompressor::Decompressor::new(raw, 4096)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| Rejection::bad_request(format!("could not decompress body: {e}")))?,
        ),
    };
    let mut out: Vec<u8> = Vec::with_capacity((raw.len() * 8).min(limit + 1).min(STEP));
    loop {
        if !budget.cover(&mut held, (out.len() + STEP).min(limit + 1)) {
            return Err(overloaded());
        }
        let n = (&mut reader)
            .take(STEP as u64)
            .read_to_end(&mut out)
            .map_err(|e| Rejection::bad_request(format!("could not decompress body: {e}")))?;
        if out.len() > limit {
            return Err(Rejection::too_large(format!(
                "decompressed body exceeds {limit} bytes"
            )));
        }
        if n == 0 {
            return Ok((out, held));
        }
    }
}

/// Whether `raw` starts with a zlib header (RFC 1950: deflate, and a
/// check value that makes the first two bytes a multiple of 31).
fn is_zlib(raw: &[u8]) -> bool {
    match raw {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads the whole body, decompressed, at most `limit` bytes either way.
pub async fn read<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: &Budget,
) -> Result<Body, Rejection>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_raw(headers, body, limit, budget)
        .await?
        .decompress(limit, budget)
        .await
}

/// A body as received (still compressed), with its share of the budget.
#[derive(Debug)]
pub struct Raw {
    enc: Encoding,
    bytes: Bytes,
    held: Held,
}

/// Reads the whole body as sent, at most `limit` bytes.
pub async fn read_raw<B>(
    headers: &HeaderMap,
    mut body: B,
    limit: usize,
    budget: &Budget,
) -> Result<Raw, Rejection>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let enc = encoding(headers)?;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let mut held = Held::default();
    if !budget.cover(&mut held, declared.unwrap_or(0)) {
        return Err(overloaded());
    }
    let mut raw = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreadable(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if raw.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            if !budget.cover(&mut held, raw.len() + data.len()) {
                return Err(overloaded());
            }
            raw.extend_from_slice(&data);
        }
    }
    Ok(Raw {
        enc,
        bytes: raw.freeze(),
        held,
    })
}

impl Raw {
    /// The body decompressed, at most `limit` bytes; the compressed bytes
    /// and their share of the budget are gone once it returns.
    pub async fn decompress(self, limit: usize, budget: &Budget) -> Result<Body, Rejection> {
        let Raw { enc, bytes, held } = self;
        let (bytes, held) = match enc {
            Encoding::Identity => (bytes, held),
            _ if bytes.len() <= INLINE_DECOMPRESS => {
                let (out, out_held) = decompress(enc, &bytes, limit, budget)?;
                (Bytes::from(out), out_held)
            }
            _ => {
                let budget = budget.clone();
                let (out, out_held) =
                    tokio::task::spawn_blocking(move || decompress(enc, &bytes, limit, &budget))
                        .await
                        .map_err(|e| {
                            Rejection::bad_request(format!("could not decompress body: {e}"))
                        })??;
                (Bytes::from(out), out_held)
            }
        };
        Ok(Body { bytes, _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        let gz = gzip(&vec![0u8; 4 << 20]);
        assert!(gz.len() < 64 * 1024);
        let budget = Budget::default();
        let err = decompress(Encoding::Gzip, &gz, 1 << 20, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        let (out, held) = decompress(Encoding::Gzip, &gz, 8 << 20, &budget).unwrap();
        assert_eq!(out.len(), 4 << 20);
        assert!(held.bytes >= out.len());
    }

    #[test]
    fn gzip_members_all_count_whichever_path_reads_them() {
        let budget = Budget::default();
        let one = gzip(b"[1,2]");
        assert_eq!(
            decompress(Encoding::Gzip, &one, 100, &budget).unwrap().0,
            b"[1,2]"
        );
        let two = [gzip(b"[1,"), gzip(b"2]")].concat();
        assert_eq!(
            decompress(Encoding::Gzip, &two, 100, &budget).unwrap().0,
            b"[1,2]"
        );
        let same = [gzip(b"ab"), gzip(b"ab")].concat();
        assert_eq!(
            decompress(Encoding::Gzip, &same, 100, &budget).unwrap().0,
            b"abab"
        );
        // a trailer claiming little does not lift the cap
        let mut bomb = gzip(&vec![0u8; 4 << 20]);
        let n = bomb.len();
        bomb[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        let err = decompress(Encoding::Gzip, &bomb, 1 << 20, &budget).unwrap_err();
        assert!(matches!(err.status.as_u16(), 400 | 413), "{err:?}");
    }

    #[test]
    fn zstd_round_trips_and_garbage_is_a_400() {
        let z = zstd::encode_all(&b"hello"[..], 3).unwrap();
        let budget = Budget::default();
        assert_eq!(
            decompress(Encoding::Zstd, &z, 100, &budget).unwrap().0,
            b"hello"
        );
        let err = decompress(Encoding::Gzip, b"not gzip", 100, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn deflate_and_brotli_round_trip_and_bombs_stop_at_the_cap() {
        let budget = Budget::default();
        let data = b"{\"message\":\"hello\"}".repeat(50);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&data).unwrap();
        let zlib = z.finish().unwrap();
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        d.write_all(&data).unwrap();
        let raw_deflate = d.finish().unwrap();
        let br = |data: &[u8]| {
            let mut out = Vec::new();
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
            w.write_all(data).unwrap();
            drop(w);
            out
        };
        for (enc, body) in [
            (Encoding::Deflate, &zlib),
            (Encoding::Deflate, &raw_deflate),
            (Encoding::Brotli, &br(&data)),
        ] {
            assert_eq!(decompress(enc, body, 1 << 20, &budget).unwrap().0, data);
        }
        // 16 MiB of zeros in a few KiB: stopped at the 1 MiB cap
        let zeros = vec![0u8; 16 << 20];
        let bomb = br(&zeros);
        assert!(bomb.len() < 64 * 1024);
        let err = decompress(Encoding::Brotli, &bomb, 1 << 20, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&zeros).unwrap();
        let err =
            decompress(Encoding::Deflate, &z.finish().unwrap(), 1 << 20, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        let err = decompress(Encoding::Brotli, b"not brotli at all", 100, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, "br".parse().unwrap());
        assert_eq!(encoding(&h).unwrap(), Encoding::Brotli);
        h.insert(http::header::CONTENT_ENCODING, "deflate".parse().unwrap());
        assert_eq!(encoding(&h).unwrap(), Encoding::Deflate);
    }

    #[test]
    fn the_budget_refuses_past_its_size_and_frees_on_drop() {
        let budget = Budget::new(1 << 20);
        let gz = gzip(&vec![7u8; 600 << 10]);
        let (_, held) = decompress(Encoding::Gzip, &gz, 8 << 20, &budget).unwrap();
        // the first body holds most of the budget: a second one is refused
        let err = decompress(Encoding::Gzip, &gz, 8 << 20, &budget).unwrap_err();
        assert_eq!(err.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.retry_after.is_some());
        drop(held);
        assert!(decompress(Encoding::Gzip, &gz, 8 << 20, &budget).is_ok());
    }

    #[test]
    fn a_body_cut_off_for_slowness_is_a_408() {
        let slow = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(
            unreadable(Box::new(slow)).status,
            http::StatusCode::REQUEST_TIMEOUT
        );
        let other = std::io::Error::other("reset");
        assert_eq!(
            unreadable(Box::new(other)).status,
            http::StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn read_counts_what_arrives() {
        let budget = Budget::new(64 << 10);
        let headers = HeaderMap::new();
        let small = http_body_util::Full::new(Bytes::from(vec![1u8; 10 << 10]));
        let body = read(&headers, small, 1 << 20, &budget).await.unwrap();
        assert_eq!(body.len(), 10 << 10);
        let big = http_body_util::Full::new(Bytes::from(vec![1u8; 60 << 10]));
        let err = read(&headers, big, 1 << 20, &budget).await.unwrap_err();
        assert_eq!(err.status, http::StatusCode::SERVICE_UNAVAILABLE);
        drop(body);
        let big = http_body_util::Full::new(Bytes::from(vec![1u8; 60 << 10]));
        assert!(read(&headers, big, 1 << 20, &budget).await.is_ok());
    }
}
