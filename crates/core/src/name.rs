//! Validated names for accounts and clients.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A label for an account or a client: 1 to 64 characters from `[A-Za-z0-9._-]`.
///
/// Names appear in URLs, audit records and error messages, so a `Name` that exists is
/// safe to print anywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Name(s.to_owned()))
        } else {
            Err(Error::InvalidName { name: s.to_owned() })
        }
    }
}

impl TryFrom<String> for Name {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_labels_and_refuse_everything_else() {
        assert!("bot-1.main_2".parse::<Name>().is_ok());
        for bad in ["", "a b", "../x", "é", &"x".repeat(65)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?} was accepted");
        }
    }
}
