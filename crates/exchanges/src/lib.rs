//! Exchange adapters: read a bot's signed request the way the exchange would, and write
//! the same request signed with the real key.
//!
//! For each exchange, one module knows:
//!
//! - how the request is parsed, byte for byte, and which parsing ambiguities to refuse
//!   (duplicate parameters, a parameter in both query and body);
//! - how a client's signature is verified over the bytes as received;
//! - what the request would do ([`keygate_core::Action`]): the endpoint table, where an
//!   endpoint not in the table is [`keygate_core::ActionKind::Unknown`];
//! - how the same parameters are re-signed with the real key.
//!
//! It is not a network client: no I/O happens here, so every function can be tested
//! against the exchanges' published vectors (`shared/exchanges/vectors.json`).
//!
//! ```
//! use keygate_exchanges::binance;
//!
//! let secret = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
//! let payload = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
//! assert_eq!(
//!     binance::hmac_signature(secret, payload),
//!     "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
//! );
//! ```

pub mod binance;

/// An error reading a client's request. Each variant maps to the exchange's own error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter appears twice, in the query, in the body, or across both.
    #[error("duplicate values for parameter {name:?}")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// The request cannot be read unambiguously.
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong, safe to show the client.
        reason: String,
    },
    /// A required parameter is absent.
    #[error("mandatory parameter {name:?} was not sent")]
    MissingParameter {
        /// The parameter's name.
        name: &'static str,
    },
    /// The signature does not verify.
    #[error("signature for this request is not valid")]
    BadSignature,
    /// The timestamp is outside the receive window.
    #[error("timestamp for this request is outside of the recvWindow")]
    StaleTimestamp,
    /// The receive window is larger than the exchange allows.
    #[error("recvWindow must be at most 60000")]
    RecvWindowTooLarge,
}
