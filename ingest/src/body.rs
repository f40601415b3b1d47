//! Reading a request body within its caps: the bytes on the wire are
//! limited while they arrive, and decompression (gzip, zstd) stops at the
//! decompressed cap, so a zip bomb costs at most that much memory.

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};

use crate::response::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
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
        _ => Err(Rejection::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "encoding",
            "unsupported Content-Encoding: use gzip, zstd or none",
        )),
    }
}

fn too_large(limit: usize) -> Rejection {
    Rejection::too_large(format!("request body exceeds {limit} bytes"))
}

/// Bodies above this size are decompressed off the async workers.
const INLINE_DECOMPRESS: usize = 64 * 1024;

fn decompress(enc: Encoding, raw: &[u8], limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit));
    let cap = limit as u64 + 1;
    let res = match enc {
        Encoding::Identity => return Ok(raw.to_vec()),
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(raw)
            .take(cap)
            .read_to_end(&mut out),
        Encoding::Zstd => {
            zstd::stream::read::Decoder::new(raw).and_then(|d| d.take(cap).read_to_end(&mut out))
        }
    };
    res.map_err(|e| Rejection::bad_request(format!("could not decompress body: {e}")))?;
    if out.len() > limit {
        return Err(Rejection::too_large(format!(
            "decompressed body exceeds {limit} bytes"
        )));
    }
    Ok(out)
}

/// Reads the whole body, decompressed, at most `limit` bytes either way.
pub async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, Rejection>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let enc = encoding(headers)?;
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let raw = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(limit)),
        Err(e) => return Err(Rejection::bad_request(format!("could not read body: {e}"))),
    };
    match enc {
        Encoding::Identity => Ok(raw),
        _ if raw.len() <= INLINE_DECOMPRESS => decompress(enc, &raw, limit).map(Bytes::from),
        _ => tokio::task::spawn_blocking(move || decompress(enc, &raw, limit))
            .await
            .map_err(|e| Rejection::bad_request(format!("could not decompress body: {e}")))?
            .map(Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 4 << 20];
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 64 * 1024);
        let err = decompress(Encoding::Gzip, &gz, 1 << 20).unwrap_err();
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            decompress(Encoding::Gzip, &gz, 8 << 20).unwrap().len(),
            4 << 20
        );
    }

    #[test]
    fn zstd_round_trips_and_garbage_is_a_400() {
        let z = zstd::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &z, 100).unwrap(), b"hello");
        let err = decompress(Encoding::Gzip, b"not gzip", 100).unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
    }
}
