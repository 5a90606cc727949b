//! Secret types: zeroized on drop, never printed, compared in constant time.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Secret bytes. No `Debug`, no `Display`; read them with [`SecretBytes::expose_secret`].
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when the value drops.
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret itself. Every call site is a place a secret is used: keep them few.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.as_slice().ct_eq(other).into()
    }

    /// The bytes as a UTF-8 secret string, or `None` when they are not UTF-8.
    pub fn into_string(self) -> Option<SecretString> {
        std::str::from_utf8(&self.0)
            .ok()
            .map(|s| SecretString::new(s.to_owned()))
    }
}

/// A secret string (an API secret, a passphrase). No `Debug`, no `Display`.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `s`; it is zeroized when the value drops.
    pub fn new(s: String) -> SecretString {
        SecretString(Zeroizing::new(s))
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

/// Shows at most the first and last four characters of an identifier (`vmPU…eh8A`), and
/// nothing of one shorter than 12 characters.
pub fn redact(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keeps_four_each_side() {
        assert_eq!(
            redact("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"),
            "vmPU…Eh8A"
        );
        assert_eq!(redact("short"), "…");
    }

    #[test]
    fn secrets_compare_by_value() {
        let s = SecretString::new("abc".into());
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
    }
}
