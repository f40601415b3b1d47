//! Compression of the dump stream: none, gzip (RFC 1952) or zstd, through
//! `async-compression`. Backups compress while reading (an `AsyncRead`
//! around the tool's stdout); restores decompress while writing (an
//! `AsyncWrite` in front of the restore tool's stdin). Both keep only the
//! codec's window in memory.

use async_compression::tokio::{bufread, write};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::error::BackupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    Gzip,
    /// zstd at its default level (3), like the `zstd` command line tool.
    #[default]
    Zstd,
}

impl Compression {
    /// The name used in the API (`none`, `gzip`, `zstd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The usual file name extension of an unencrypted object ("" for none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    pub(crate) fn encoder<R>(self, r: R) -> Box<dyn AsyncRead + Send + Unpin>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(bufread::GzipEncoder::new(BufReader::with_capacity(
                64 * 1024,
                r,
            ))),
            Compression::Zstd => Box::new(bufread::ZstdEncoder::new(BufReader::with_capacity(
                64 * 1024,
                r,
            ))),
        }
    }

    pub(crate) fn decoder<W>(self, w: W) -> Box<dyn AsyncWrite + Send + Unpin>
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        match self {
            Compression::None => Box::new(w),
            Compression::Gzip => Box::new(write::GzipDecoder::new(w)),
            Compression::Zstd => Box::new(write::ZstdDecoder::new(w)),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = BackupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(BackupError::Invalid(format!(
                "compression {other:?}: use none, gzip or zstd"
            ))),
        }
    }
}
