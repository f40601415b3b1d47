//! Encryption of backup objects: envelope encryption with AES-256-GCM in a
//! streaming, chunked, authenticated format.
//!
//! Each backup gets a random 256-bit data key. The data key is wrapped
//! (AES-256-GCM, random nonce) under a master key derived with HKDF-SHA256
//! from a secret (`SLUICE_SECRET_KEY`) and the purpose label
//! `sluice backup key-wrap v1`, so it is never the key that
//! `storage::secrets` derives for connection URLs. Master keys carry an id;
//! a [`Keyring`] holds the current one and older ones, so backups stay
//! restorable after the secret is rotated.
//!
//! The object is a header, then the compressed dump sealed with the STREAM
//! construction (`aead::stream`, big-endian 32-bit counter with a last-chunk
//! flag) in chunks of [`CHUNK`] bytes of plaintext, each followed by its
//! 16-byte tag. Every chunk is authenticated with the header as associated
//! data; a flipped bit, a reordered, dropped or truncated chunk, or a
//! missing end all fail to decrypt.
//!
//! Header: `SLUICEBK`, version (1), algorithm (1 = AES-256-GCM STREAM-BE32),
//! chunk size (u32 BE), key id length (u8) and key id, wrap nonce (12),
//! wrapped data key (48), stream nonce prefix (7).

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::error::{BackupError, Result};

/// Plaintext bytes per encrypted chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 8] = b"SLUICEBK";
const VERSION: u8 = 1;
const ALG_AES256GCM_STREAM_BE32: u8 = 1;
const WRAPPED_KEY: usize = 32 + TAG;
const NONCE_PREFIX: usize = 7;
/// The largest chunk size a header may claim (bounds a restore's memory).
const MAX_CHUNK: usize = 1 << 20;
const PURPOSE: &[u8] = b"sluice backup key-wrap v1";

/// A master key that wraps data keys, with its id.
#[derive(Clone)]
struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The master keys: the current one (new backups) and older ones (restores
/// of backups made before a rotation).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

fn derive(id: &str, secret: &str) -> Result<MasterKey> {
    if id.is_empty() || id.len() > 64 {
        return Err(BackupError::Invalid(
            "master key id: use 1 to 64 bytes".into(),
        ));
    }
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(PURPOSE, &mut key)
        .map_err(|_| BackupError::Invalid("master key length".into()))?;
    Ok(MasterKey {
        id: id.to_owned(),
        cipher: Aes256Gcm::new(&key.into()),
    })
}

impl Keyring {
    /// A keyring whose current master key is derived from `secret`.
    pub fn new(id: &str, secret: &str) -> Result<Self> {
        Ok(Self {
            keys: vec![derive(id, secret)?],
        })
    }

    /// Adds an older master key, for restoring backups made under it.
    pub fn with_previous(mut self, id: &str, secret: &str) -> Result<Self> {
        self.keys.push(derive(id, secret)?);
        Ok(self)
    }

    fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Encrypts one object: [`Sealer::new`] gives the header to write first,
/// then every full chunk goes through `seal_next` and the final, shorter
/// (possibly empty) one through `seal_last`.
pub struct Sealer {
    stream: EncryptorBE32<Aes256Gcm>,
    header: Vec<u8>,
}

impl Sealer {
    pub fn new(keyring: &Keyring) -> Result<Self> {
        let master = keyring.current();
        let mut rng = rand::rng();
        let mut data_key = [0u8; 32];
        rng.fill_bytes(&mut data_key);
        let mut wrap_nonce = [0u8; 12];
        rng.fill_bytes(&mut wrap_nonce);
        let mut prefix = [0u8; NONCE_PREFIX];
        rng.fill_bytes(&mut prefix);

        let mut header = Vec::with_capacity(96);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.push(ALG_AES256GCM_STREAM_BE32);
        header.extend_from_slice(&(CHUNK as u32).to_be_bytes());
        header.push(master.id.len() as u8);
        header.extend_from_slice(master.id.as_bytes());
        let wrapped = master
            .cipher
            .encrypt(
                &Nonce::from(wrap_nonce),
                Payload {
                    msg: &data_key,
                    aad: &header,
                },
            )
            .map_err(|_| BackupError::Decrypt("wrapping the data key failed".into()))?;
        header.extend_from_slice(&wrap_nonce);
        header.extend_from_slice(&wrapped);
        header.extend_from_slice(&prefix);
        let stream = EncryptorBE32::from_aead(Aes256Gcm::new(&data_key.into()), &prefix.into());
        Ok(Self { stream, header })
    }

    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seals a full chunk of exactly [`CHUNK`] bytes.
    pub fn seal_next(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        debug_assert_eq!(chunk.len(), CHUNK);
        self.stream
            .encrypt_next(Payload {
                msg: chunk,
                aad: &self.header,
            })
            .map_err(|_| BackupError::Decrypt("encryption failed (stream too long)".into()))
    }

    /// Seals the last chunk (shorter than [`CHUNK`], possibly empty).
    pub fn seal_last(self, chunk: &[u8]) -> Result<Vec<u8>> {
        debug_assert!(chunk.len() < CHUNK);
        self.stream
            .encrypt_last(Payload {
                msg: chunk,
                aad: &self.header,
            })
            .map_err(|_| BackupError::Decrypt("encryption failed".into()))
    }
}

/// Parses and checks the header at the start of `data`: returns the header
/// length, the unwrapped data key, chunk size and nonce prefix, or `None`
/// when `data` does not yet hold the whole header.
struct Opened {
    header: Vec<u8>,
    stream: DecryptorBE32<Aes256Gcm>,
    chunk: usize,
}

fn open_header(keyring: &Keyring, data: &[u8]) -> Result<Option<Opened>> {
    let fixed = MAGIC.len() + 2 + 4 + 1;
    if data.len() < fixed {
        return Ok(None);
    }
    if &data[..8] != MAGIC {
        return Err(BackupError::Decrypt(
            "not an encrypted Sluice backup (bad magic)".into(),
        ));
    }
    if data[8] != VERSION || data[9] != ALG_AES256GCM_STREAM_BE32 {
        return Err(BackupError::Decrypt(format!(
            "unknown format version {} / algorithm {}",
            data[8], data[9]
        )));
    }
    let chunk = u32::from_be_bytes([data[10], data[11], data[12], data[13]]) as usize;
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(BackupError::Decrypt(format!("bad chunk size {chunk}")));
    }
    let id_len = data[14] as usize;
    let total = fixed + id_len + 12 + WRAPPED_KEY + NONCE_PREFIX;
    if data.len() < total {
        return Ok(None);
    }
    let id_end = fixed + id_len;
    let id = std::str::from_utf8(&data[fixed..id_end])
        .map_err(|_| BackupError::Decrypt("master key id is not UTF-8".into()))?;
    let master = keyring
        .get(id)
        .ok_or_else(|| BackupError::UnknownKey(id.to_owned()))?;
    let wrap_nonce: [u8; 12] = data[id_end..id_end + 12]
        .try_into()
        .map_err(|_| BackupError::Decrypt("bad wrap nonce".into()))?;
    let wrapped = &data[id_end + 12..id_end + 12 + WRAPPED_KEY];
    let prefix = &data[id_end + 12 + WRAPPED_KEY..total];
    let data_key = master
        .cipher
        .decrypt(
            &Nonce::from(wrap_nonce),
            Payload {
                msg: wrapped,
                aad: &data[..id_end],
            },
        )
        .map_err(|_| {
            BackupError::Decrypt(format!(
                "the data key does not unwrap under master key {id:?} (wrong secret key, or a corrupted header)"
            ))
        })?;
    let key: [u8; 32] = data_key
        .as_slice()
        .try_into()
        .map_err(|_| BackupError::Decrypt("bad data key length".into()))?;
    let prefix: [u8; NONCE_PREFIX] = prefix
        .try_into()
        .map_err(|_| BackupError::Decrypt("bad nonce prefix".into()))?;
    Ok(Some(Opened {
        header: data[..total].to_vec(),
        stream: DecryptorBE32::from_aead(Aes256Gcm::new(&key.into()), &prefix.into()),
        chunk,
    }))
}

/// Checks only the header of an encrypted object (its format, and that the
/// keyring unwraps its data key). `Ok(false)` when `data` is too short.
pub fn check_header(keyring: &Keyring, data: &[u8]) -> Result<bool> {
    Ok(open_header(keyring, data)?.is_some())
}

/// Decrypts an object fed piece by piece (as the object store streams it).
/// Memory: one chunk plus the piece being fed.
pub struct Opener {
    keyring: Keyring,
    buf: Vec<u8>,
    opened: Option<Opened>,
}

impl Opener {
    pub fn new(keyring: &Keyring) -> Self {
        Self {
            keyring: keyring.clone(),
            buf: Vec::new(),
            opened: None,
        }
    }

    /// Feeds the next bytes; calls `out` with each plaintext chunk that is
    /// known not to be the last one.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(Vec<u8>)) -> Result<()> {
        while !data.is_empty() {
            let Some(opened) = &mut self.opened else {
                self.buf.extend_from_slice(data);
                if let Some(o) = open_header(&self.keyring, &self.buf)? {
                    self.buf.drain(..o.header.len());
                    self.opened = Some(o);
                    // Whatever followed the header is now in `buf`.
                    let rest = std::mem::take(&mut self.buf);
                    self.feed(&rest, out)?;
                }
                return Ok(());
            };
            let sealed = opened.chunk + TAG;
            // A full sealed chunk is only known not to be the last one
            // when at least one more byte follows it.
            let want = sealed + 1 - self.buf.len().min(sealed + 1);
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() > sealed {
                let pt = opened
                    .stream
                    .decrypt_next(Payload {
                        msg: &self.buf[..sealed],
                        aad: &opened.header,
                    })
                    .map_err(|_| {
                        BackupError::Decrypt(
                            "a chunk failed authentication (corrupted or reordered object, or wrong key)"
                                .into(),
                        )
                    })?;
                self.buf.drain(..sealed);
                out(pt);
            }
        }
        Ok(())
    }

    /// Ends the stream: decrypts the last chunk, which must be there.
    pub fn finish(self) -> Result<Vec<u8>> {
        let opened = self
            .opened
            .ok_or_else(|| BackupError::Decrypt("the object ends before its header does".into()))?;
        opened
            .stream
            .decrypt_last(Payload {
                msg: &self.buf,
                aad: &opened.header,
            })
            .map_err(|_| {
                BackupError::Decrypt(
                    "the last chunk failed authentication (truncated or corrupted object)".into(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(keyring: &Keyring, plain: &[u8]) -> Vec<u8> {
        let mut s = Sealer::new(keyring).unwrap();
        let mut out = s.header().to_vec();
        let mut chunks = plain.chunks_exact(CHUNK);
        for c in &mut chunks {
            out.extend(s.seal_next(c).unwrap());
        }
        out.extend(s.seal_last(chunks.remainder()).unwrap());
        out
    }

    fn open(keyring: &Keyring, sealed: &[u8], piece: usize) -> Result<Vec<u8>> {
        let mut o = Opener::new(keyring);
        let mut plain = Vec::new();
        for p in sealed.chunks(piece.max(1)) {
            o.feed(p, &mut |c| plain.extend(c))?;
        }
        plain.extend(o.finish()?);
        Ok(plain)
    }

    #[test]
    fn round_trips_any_length_and_piece_size() {
        let k = Keyring::new("k1", "secret").unwrap();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = seal(&k, &plain);
            assert!(!sealed
                .windows(16)
                .any(|w| plain.len() >= 16 && w == &plain[..16]));
            for piece in [1, 7, 8192, CHUNK + TAG, 1 << 20] {
                if len > CHUNK && piece == 1 {
                    continue; // slow and adds nothing
                }
                assert_eq!(
                    open(&k, &sealed, piece).unwrap(),
                    plain,
                    "len {len} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn detects_tampering_truncation_reordering_and_wrong_keys() {
        let k = Keyring::new("k1", "secret").unwrap();
        let plain = vec![7u8; 3 * CHUNK + 5];
        let sealed = seal(&k, &plain);
        let header_len = sealed.len() - (3 * (CHUNK + TAG) + 5 + TAG);

        let mut flipped = sealed.clone();
        flipped[header_len + 100] ^= 1;
        assert!(matches!(
            open(&k, &flipped, 8192),
            Err(BackupError::Decrypt(_))
        ));

        // Truncated at a chunk boundary: the last-chunk flag is missing.
        let cut = &sealed[..header_len + 2 * (CHUNK + TAG)];
        assert!(matches!(open(&k, cut, 8192), Err(BackupError::Decrypt(_))));
        // Truncated mid-chunk.
        assert!(open(&k, &sealed[..sealed.len() - 3], 8192).is_err());

        // Two chunks swapped.
        let mut swapped = sealed[..header_len].to_vec();
        let c = |i: usize| {
            &sealed[header_len + i * (CHUNK + TAG)..header_len + (i + 1) * (CHUNK + TAG)]
        };
        swapped.extend_from_slice(c(1));
        swapped.extend_from_slice(c(0));
        swapped.extend_from_slice(&sealed[header_len + 2 * (CHUNK + TAG)..]);
        assert!(open(&k, &swapped, 8192).is_err());

        // Same key id, another secret: the data key does not unwrap.
        let other = Keyring::new("k1", "another").unwrap();
        assert!(matches!(
            open(&other, &sealed, 8192),
            Err(BackupError::Decrypt(_))
        ));
        // Unknown key id.
        let unknown = Keyring::new("k2", "secret").unwrap();
        assert!(matches!(
            open(&unknown, &sealed, 8192),
            Err(BackupError::UnknownKey(_))
        ));
        // After a rotation the old key still opens old backups.
        let rotated = Keyring::new("k2", "new")
            .unwrap()
            .with_previous("k1", "secret")
            .unwrap();
        assert_eq!(open(&rotated, &sealed, 8192).unwrap(), plain);
        assert!(check_header(&rotated, &sealed).unwrap());
        assert!(!check_header(&rotated, &sealed[..10]).unwrap());
    }
}
