//! keygate's vocabulary as types.
//!
//! keygate keeps real exchange API keys in a vault and hands each bot a least-privilege
//! *virtual key*. This crate names the things the rest of keygate talks about:
//!
//! - [`Exchange`]: which exchange a key belongs to;
//! - [`Name`]: a validated label for an account or a client;
//! - [`Action`]: what a request would do at the exchange, as an adapter reads it;
//! - [`Policy`]: what a client may do; [`Decision`]: the verdict on one action;
//! - [`Event`]: one audit record;
//! - [`escape_controls`]: text from outside, made safe to show on a terminal;
//! - [`rfc3339`]: a time as keygate shows it to people.
//!
//! It is not the place for I/O, clocks, crypto or HTTP: every type here is plain data,
//! so that policy, audit and exchange adapters can agree on it without depending on each
//! other.
//!
//! ```
//! use keygate_core::{ActionKind, Scope};
//!
//! assert_eq!(ActionKind::Cancel.required_scope(), Some(Scope::Trade));
//! assert_eq!(ActionKind::Unknown.required_scope(), None);
//! ```

mod action;
mod duration;
mod event;
mod listed;
mod name;
mod policy;
mod text;
mod time;

pub use action::{is_quoted_in, Action, ActionKind, Market, OrderRef, OrderTerms, Side};
pub use duration::{parse_duration, MAX_DURATION};
pub use event::{
    AdminEvent, BatchOrder, Event, EventBody, LostEvents, Outcome, OutcomeEvent, RequestEvent,
};
pub use listed::{ExchangeConditionalOrder, ExchangeOrder, ExchangeWithdrawal};
pub use name::Name;
pub use policy::{
    source_network, ClientStatus, Decision, Denial, Policy, Rule, Scope, Scopes,
    WithdrawalDestination, DEFAULT_NOTIONAL_ASSET,
};
pub use text::{escape_controls, escape_json_controls};
pub use time::rfc3339;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An exchange keygate has an adapter for.
///
/// Not `#[non_exhaustive]`: every `match` on it in the workspace names each exchange, so
/// adding one is a compile error wherever it must be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exchange {
    /// Binance spot, margin (`/sapi`) and futures (`/fapi`, `/dapi`).
    Binance,
}

impl Exchange {
    /// Every supported exchange.
    pub const ALL: &'static [Exchange] = &[Exchange::Binance];

    /// Every supported exchange's name, comma-separated, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = Exchange::ALL.iter().map(|e| e.as_str()).collect();
        names.join(", ")
    }

    /// The lowercase name used in URLs, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
        }
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Exchange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Exchange::ALL
            .iter()
            .copied()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownExchange { name: s.to_owned() })
    }
}

/// An error turning raw input into one of this crate's types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The exchange name is not one keygate supports.
    #[error("unknown exchange {name:?} (supported: {})", Exchange::names())]
    UnknownExchange {
        /// The name as given.
        name: String,
    },
    /// A name is empty, too long or uses characters outside `[A-Za-z0-9._-]`.
    #[error("invalid name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// A scope is not one of read, trade, withdraw, transfer.
    #[error("unknown scope {scope:?} (expected read, trade, withdraw or transfer)")]
    UnknownScope {
        /// The scope as given.
        scope: String,
    },
    /// A withdrawal destination is not `ADDRESS` or `ADDRESS/TAG`.
    #[error("invalid withdrawal address {destination:?}: {reason}")]
    InvalidDestination {
        /// The destination as given.
        destination: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A client status is not one of active, frozen, revoked.
    #[error("unknown client status {status:?}")]
    UnknownStatus {
        /// The status as given.
        status: String,
    },
    /// A duration is not whole units run together (`90d`, `24h`, `30m`, `45s`, `2w`,
    /// `1h30m`).
    #[error("invalid duration {text:?}: use forms like 90d, 24h, 30m, 45s or 1h30m")]
    InvalidDuration {
        /// The duration as given.
        text: String,
    },
    /// A duration is longer than [`MAX_DURATION`].
    #[error("duration {text:?} is longer than a hundred years (36600d)")]
    DurationTooLong {
        /// The duration as given.
        text: String,
    },
}
