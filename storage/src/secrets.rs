//! Encryption of stored secrets (connection URLs) with AES-256-GCM, keyed
//! by SHA-256 of `SLUICE_SECRET_KEY`. The random 96-bit nonce is stored in
//! front of the ciphertext.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Result, StorageError};

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    pub fn new(secret_key: &str) -> Self {
        let key: [u8; 32] =
            Sha256::digest(format!("sluice-secrets:{secret_key}").as_bytes()).into();
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    pub fn seal(&self, plaintext: &str) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .map_err(|_| StorageError::Invalid("encryption failed".into()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String> {
        if sealed.len() < 12 {
            return Err(StorageError::Invalid("sealed secret too short".into()));
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| StorageError::Invalid("sealed secret too short".into()))?;
        let pt = self.cipher.decrypt(&Nonce::from(nonce), ct).map_err(|_| {
            StorageError::Invalid("secret cannot be decrypted with this SLUICE_SECRET_KEY".into())
        })?;
        String::from_utf8(pt).map_err(|_| StorageError::Invalid("secret is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_keys() {
        let a = SecretBox::new("one");
        let sealed = a.seal("postgres://u:p@h/db").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"u:p@"));
        assert_eq!(a.open(&sealed).unwrap(), "postgres://u:p@h/db");
        assert!(SecretBox::new("two").open(&sealed).is_err());
        assert_ne!(a.seal("x").unwrap(), a.seal("x").unwrap());
    }
}
