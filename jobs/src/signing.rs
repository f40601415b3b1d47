//! Keys derived from Sluice's secret for one purpose each: signed download
//! URLs (HMAC-SHA256 over the backup id and the expiry) and the masking key
//! of a tenant (so `hash` gives the same output for the same input in
//! every restore of that tenant, and different outputs across tenants).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, purpose: &str) -> HmacSha256 {
    // The purpose is bound into every MAC.
    let mut m = match <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(purpose.as_bytes());
    m.update(&[0]);
    m
}

/// The signature of a download URL for `backup_id` valid until
/// `expires` (Unix seconds), as lowercase hex.
pub fn download_signature(secret: &str, backup_id: i64, expires: i64) -> String {
    let mut m = mac(secret, "sluice backup download v1");
    m.update(format!("{backup_id}:{expires}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Checks a download URL's signature in constant time.
pub fn check_download(secret: &str, backup_id: i64, expires: i64, signature: &str) -> bool {
    let Ok(given) = hex::decode(signature) else {
        return false;
    };
    let mut m = mac(secret, "sluice backup download v1");
    m.update(format!("{backup_id}:{expires}").as_bytes());
    m.verify_slice(&given).is_ok()
}

/// The key `hash` masking uses for `tenant`.
pub fn masking_key(secret: &str, tenant: Uuid) -> [u8; 32] {
    let mut m = mac(secret, "sluice masking v1");
    m.update(tenant.as_bytes());
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_id_and_expiry() {
        let s = download_signature("k", 7, 1000);
        assert!(check_download("k", 7, 1000, &s));
        assert!(!check_download("k", 8, 1000, &s));
        assert!(!check_download("k", 7, 1001, &s));
        assert!(!check_download("other", 7, 1000, &s));
        assert!(!check_download("k", 7, 1000, "zz"));
        let mut flipped = s.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!check_download(
            "k",
            7,
            1000,
            &String::from_utf8(flipped).unwrap()
        ));
    }

    #[test]
    fn masking_keys_differ_per_tenant() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(masking_key("k", a), masking_key("k", a));
        assert_ne!(masking_key("k", a), masking_key("k", b));
    }
}
