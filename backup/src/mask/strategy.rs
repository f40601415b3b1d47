//! The strategies themselves, on decoded values (`None` is SQL NULL).

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;

use super::{MaskError, MaskingRules, Strategy};

/// Hex digits a `hash` value keeps (128 bits of the HMAC).
pub const HASH_HEX_LEN: usize = 32;
/// Length of the random text that replaces NULL, empty values and values
/// with no letter or digit under `randomize`.
const FILLER_LEN: usize = 8;
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Applies one restore's rules: one key, one random generator.
pub struct Masker<'r> {
    rules: &'r MaskingRules,
    mac: Hmac<Sha256>,
    rng: StdRng,
}

impl<'r> Masker<'r> {
    pub fn new(rules: &'r MaskingRules) -> Result<Self, MaskError> {
        // HMAC takes keys of any length (the rules refuse an empty one).
        let mac = Hmac::<Sha256>::new_from_slice(rules.key()).map_err(|_| MaskError::EmptyKey)?;
        Ok(Self {
            rules,
            mac,
            rng: StdRng::from_rng(&mut rand::rng()),
        })
    }

    /// The strategy for a column by its real name.
    pub fn strategy_for(&self, column: &str) -> Option<Strategy> {
        self.rules.strategy_for(column)
    }

    /// The masked value of `value` (`None` is NULL).
    pub fn apply(&mut self, strategy: Strategy, value: Option<&[u8]>) -> Option<Vec<u8>> {
        match strategy {
            Strategy::Null => None,
            Strategy::Hash => value.map(|v| self.hash(v)),
            Strategy::Randomize => Some(self.randomize(value)),
        }
    }

    /// The first [`HASH_HEX_LEN`] lowercase hex digits of HMAC-SHA256.
    pub fn hash(&self, value: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..HASH_HEX_LEN / 2]).into_bytes()
    }

    /// A value of the same shape that differs from `value`.
    pub fn randomize(&mut self, value: Option<&[u8]>) -> Vec<u8> {
        let Some(value) = value else {
            return self.filler();
        };
        match std::str::from_utf8(value) {
            Ok(text) => {
                if !text.chars().any(char::is_alphanumeric) {
                    return self.filler();
                }
                loop {
                    let out: String = text.chars().map(|c| self.similar_char(c)).collect();
                    if out.as_bytes() != value {
                        return out.into_bytes();
                    }
                }
            }
            Err(_) => {
                if !value.iter().any(u8::is_ascii_alphanumeric) {
                    return self.filler();
                }
                loop {
                    let out: Vec<u8> = value.iter().map(|&b| self.similar_byte(b)).collect();
                    if out != value {
                        return out;
                    }
                }
            }
        }
    }

    fn similar_char(&mut self, c: char) -> char {
        if c.is_numeric() {
            char::from(b'0' + self.rng.random_range(0..10u8))
        } else if c.is_alphabetic() {
            let letter = char::from(b'a' + self.rng.random_range(0..26u8));
            if c.is_uppercase() {
                letter.to_ascii_uppercase()
            } else {
                letter
            }
        } else {
            c
        }
    }

    fn similar_byte(&mut self, b: u8) -> u8 {
        match b {
            b'0'..=b'9' => b'0' + self.rng.random_range(0..10u8),
            b'a'..=b'z' => b'a' + self.rng.random_range(0..26u8),
            b'A'..=b'Z' => b'A' + self.rng.random_range(0..26u8),
            other => other,
        }
    }

    fn filler(&mut self) -> Vec<u8> {
        (0..FILLER_LEN)
            .map(|_| ALPHANUMERIC[self.rng.random_range(0..ALPHANUMERIC.len())])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MaskingRules {
        MaskingRules::new(b"test key".to_vec()).unwrap()
    }

    #[test]
    fn hash_is_keyed_deterministic_hex() {
        let r = rules();
        let m = Masker::new(&r).unwrap();
        let a = m.hash(b"a@example.com");
        assert_eq!(a.len(), 32);
        assert!(a
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
        assert_eq!(a, Masker::new(&r).unwrap().hash(b"a@example.com"));
        assert_ne!(a, m.hash(b"b@example.com"));
        let other = MaskingRules::new(b"other key".to_vec()).unwrap();
        assert_ne!(a, Masker::new(&other).unwrap().hash(b"a@example.com"));
    }

    #[test]
    fn randomize_keeps_shape_and_differs() {
        let r = rules();
        let mut m = Masker::new(&r).unwrap();
        for v in [
            "+1 (555) 010-9999",
            "Ab9",
            "x",
            "7",
            "Émile Zoé",
            "a\tb\\c\n",
        ] {
            for _ in 0..50 {
                let out = String::from_utf8(m.randomize(Some(v.as_bytes()))).unwrap();
                assert_ne!(out, v);
                assert_eq!(out.chars().count(), v.chars().count());
                for (o, i) in out.chars().zip(v.chars()) {
                    if i.is_ascii_digit() {
                        assert!(o.is_ascii_digit(), "{v} -> {out}");
                    } else if i.is_alphabetic() {
                        assert!(o.is_alphabetic(), "{v} -> {out}");
                        assert_eq!(o.is_uppercase(), i.is_uppercase(), "{v} -> {out}");
                    } else {
                        assert_eq!(o, i);
                    }
                }
            }
        }
        for v in [None, Some(&b""[..]), Some(b"--- !"), Some(b"\xff\xfe")] {
            let out = m.randomize(v);
            assert_eq!(out.len(), 8);
            assert!(out.iter().all(u8::is_ascii_alphanumeric));
        }
        let out = m.randomize(Some(b"a\xffb"));
        assert_ne!(out, b"a\xffb");
        assert_eq!(out[1], 0xff);
    }

    #[test]
    fn strategies_on_null() {
        let r = rules();
        let mut m = Masker::new(&r).unwrap();
        assert_eq!(m.apply(Strategy::Hash, None), None);
        assert_eq!(m.apply(Strategy::Null, Some(b"x")), None);
        assert!(m.apply(Strategy::Randomize, None).is_some());
    }
}
