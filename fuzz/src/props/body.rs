//! Request bodies as sent: identity, gzip or zstd (deflate and br, which
//! the Sentry SDKs send, are covered by the ingest crate's unit tests), read and decompressed
//! within a cap by [`sluice_ingest::body::read`] (with the libdeflate fast
//! path of ingest/src/gunzip.rs for one-member gzip).
//!
//! The input's first byte picks the `Content-Encoding` (low 3 bits) and,
//! with its high bit, whether the rest is sent as it is or compressed here
//! first; the second byte picks the cap. Whatever arrives, the body read
//! is never longer than the cap; it is what a plain streaming decoder
//! makes of the same bytes (so the fast path agrees with it), and a body
//! compressed here reads back exactly, or is refused as too large when it
//! exceeds the cap. Refusals are client errors (400, 413, 415).

use std::cell::RefCell;
use std::io::{Read, Write};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use sluice_ingest::body::{self, Budget};

const ENCODINGS: [&str; 8] = [
    "",
    "identity",
    "gzip",
    "x-gzip",
    "zstd",
    " GZip ",
    "compress",
    "gzip, zstd",
];
const CAPS: [usize; 8] = [0, 1, 7, 64, 512, 4096, 65_536, 1 << 20];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Codec {
    Identity,
    Gzip,
    Zstd,
    Unsupported,
}

fn codec(header: &str) -> Codec {
    match header.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Codec::Identity,
        "gzip" | "x-gzip" => Codec::Gzip,
        "zstd" => Codec::Zstd,
        _ => Codec::Unsupported,
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// `body::read` of `sent`, on a current-thread runtime kept per thread.
fn read(headers: &HeaderMap, sent: Vec<u8>, cap: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a tokio runtime")
        });
        let body = http_body_util::Full::new(Bytes::from(sent));
        rt.block_on(body::read(headers, body, cap, &Budget::default()))
            .map(|b| b.to_vec())
            .map_err(|r| (r.status, r.message))
    })
}

/// What a plain streaming decoder makes of `sent`, reading at most one
/// byte past `cap`; `None` when it fails.
fn reference(codec: Codec, sent: &[u8], cap: usize) -> Option<Vec<u8>> {
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Identity => Box::new(sent),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(sent)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(sent).ok()?),
        Codec::Unsupported => return None,
    };
    let mut out = Vec::new();
    reader.take(cap as u64 + 1).read_to_end(&mut out).ok()?;
    Some(out)
}

fn compress(codec: Codec, plain: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Codec::Zstd => zstd::encode_all(plain, 1).expect("zstd into memory"),
        Codec::Identity | Codec::Unsupported => plain.to_vec(),
    }
}

pub fn check(data: &[u8]) {
    let [mode, cap, payload @ ..] = data else {
        return;
    };
    let header = ENCODINGS[usize::from(mode & 7)];
    let codec = codec(header);
    let compress_here = mode & 0x80 != 0;
    let cap = CAPS[usize::from(cap & 7)];
    let mut headers = HeaderMap::new();
    if !header.is_empty() {
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static(header),
        );
    }
    let sent = if compress_here {
        compress(codec, payload)
    } else {
        payload.to_vec()
    };
    let got = read(&headers, sent.clone(), cap);
    if let Ok(out) = &got {
        assert!(
            out.len() <= cap,
            "read {} bytes past a cap of {cap}",
            out.len()
        );
    }
    if let Err((status, message)) = &got {
        assert!(
            matches!(status.as_u16(), 400 | 413 | 415),
            "refused with {status}: {message}"
        );
        assert_eq!(
            *status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codec == Codec::Unsupported,
            "{message}"
        );
    }
    if codec == Codec::Unsupported {
        assert!(got.is_err(), "an unsupported encoding was read");
        return;
    }
    if compress_here {
        match &got {
            Ok(out) => assert_eq!(out, payload, "a {header:?} body read back differently"),
            Err((status, message)) => assert!(
                *status == StatusCode::PAYLOAD_TOO_LARGE
                    && (payload.len() > cap || sent.len() > cap),
                "a {header:?} body within the cap is refused: {message}"
            ),
        }
        return;
    }
    let want = (sent.len() <= cap)
        .then(|| reference(codec, &sent, cap))
        .flatten()
        .filter(|out| out.len() <= cap);
    match (&got, &want) {
        (Ok(out), Some(want)) => assert_eq!(out, want, "{header:?} decoded differently"),
        (Ok(out), None) => panic!(
            "{header:?}: read {} bytes that a streaming decoder refuses",
            out.len()
        ),
        (Err((_, message)), Some(_)) => {
            panic!("{header:?}: a streaming decoder reads what was refused: {message}")
        }
        (Err(_), None) => {}
    }
}
