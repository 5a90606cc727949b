//! Keys keygate manages, known only by keyed fingerprints.
//!
//! The vault gives the scanner HMAC-SHA256(fingerprint_key, value) of every API key and
//! secret it holds, never the values. The scanner computes the same HMAC over each
//! candidate token and compares in constant time, so no plaintext secret is copied into
//! the scanner, its reports or its memory beyond what it reads from the scanned files.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Fingerprints of the keys keygate manages, each naming its account.
///
/// ```
/// use keygate_scan::ManagedKeys;
///
/// let fk = [7u8; 32];
/// let fp = ManagedKeys::fingerprint(&fk, b"my-exchange-secret");
/// let managed = ManagedKeys::new(fk, vec![("binance-main".to_owned(), fp)]);
/// assert_eq!(managed.lookup(b"my-exchange-secret"), Some("binance-main"));
/// assert_eq!(managed.lookup(b"something-else"), None);
/// ```
pub struct ManagedKeys {
    key: Zeroizing<[u8; 32]>,
    // Indexed by the first 8 bytes; the full 32 bytes are compared in constant time.
    entries: HashMap<[u8; 8], Vec<([u8; 32], String)>>,
}

impl ManagedKeys {
    /// Builds the set from `(account label, fingerprint)` pairs, each fingerprint made
    /// with [`ManagedKeys::fingerprint`] or [`ManagedKeys::fingerprint_secret`] and `fingerprint_key`.
    pub fn new(fingerprint_key: [u8; 32], entries: Vec<(String, [u8; 32])>) -> ManagedKeys {
        let mut map: HashMap<[u8; 8], Vec<([u8; 32], String)>> = HashMap::new();
        for (account, fp) in entries {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&fp[..8]);
            map.entry(prefix).or_default().push((fp, account));
        }
        ManagedKeys {
            key: Zeroizing::new(fingerprint_key),
            entries: map,
        }
    }

    /// HMAC-SHA256(`key`, `value`): the fingerprint of one exact value.
    pub fn fingerprint(key: &[u8; 32], value: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The fingerprint of a stored API key or secret as the scanner will see it: PEM
    /// private keys by their decoded DER (so the line layout does not matter), anything
    /// else by its text with surrounding whitespace trimmed.
    pub fn fingerprint_secret(key: &[u8; 32], secret: &str) -> [u8; 32] {
        let t = secret.trim();
        if let Some(der) = pem_der(t) {
            return Self::fingerprint(key, &der);
        }
        Self::fingerprint(key, t.as_bytes())
    }

    /// The account whose key or secret is exactly `value`.
    pub fn lookup(&self, value: &[u8]) -> Option<&str> {
        if self.entries.is_empty() {
            return None;
        }
        let fp = Self::fingerprint(&self.key, value);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&fp[..8]);
        self.entries
            .get(&prefix)?
            .iter()
            .find(|(e, _)| bool::from(e.ct_eq(&fp)))
            .map(|(_, account)| account.as_str())
    }

    /// Number of fingerprints.
    pub fn len(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }

    /// True when there are no fingerprints.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The DER bytes of the PEM private key in `text`: a vault secret, wiped when dropped.
fn pem_der(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let begin = text.find("-----BEGIN ")?;
    let after_header = begin + text[begin..].find("KEY-----")? + "KEY-----".len();
    let end = text[after_header..].find("-----END ")? + after_header;
    crate::engine::decode_pem_body(&text.as_bytes()[after_header..end]).map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_fingerprint_ignores_layout() {
        let k = [1u8; 32];
        let a = "-----BEGIN EC PRIVATE KEY-----\nAAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJ\n-----END EC PRIVATE KEY-----\n";
        let b = "-----BEGIN EC PRIVATE KEY-----\\nAAAABBBBCCCCDDDDEEEE\\nFFFFGGGGHHHHIIIIJJJJ\\n-----END EC PRIVATE KEY-----";
        assert_eq!(
            ManagedKeys::fingerprint_secret(&k, a),
            ManagedKeys::fingerprint_secret(&k, b)
        );
    }
}
