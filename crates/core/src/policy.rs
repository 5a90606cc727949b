//! What a client may do, and the verdict on one action.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A permission a client can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read balances, orders and trades.
    Read,
    /// Place, amend and cancel orders.
    Trade,
    /// Withdraw funds off the exchange.
    Withdraw,
    /// Move funds between wallets and accounts.
    Transfer,
}

impl Scope {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Trade => "trade",
            Scope::Withdraw => "withdraw",
            Scope::Transfer => "transfer",
        }
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "trade" => Ok(Scope::Trade),
            "withdraw" => Ok(Scope::Withdraw),
            "transfer" => Ok(Scope::Transfer),
            _ => Err(Error::UnknownScope {
                scope: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes. The default is read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Whether the set grants `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The scopes, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes([Scope::Read].into_iter().collect())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().collect())
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// What a client may do. Checked on every request.
///
/// A field this keygate does not know is refused, not skipped: a policy written by a
/// later keygate may restrict with it (a withdrawal address list, a daily limit), and read
/// without it the client would be allowed more than its policy says. Refused, the client
/// is unreadable, and so refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Granted scopes.
    pub scopes: Scopes,
    /// Source networks the client may call from. Empty means nowhere.
    pub allow_ips: Vec<IpNet>,
    /// Exchange symbol ids the client may touch; `None` means any.
    pub symbols: Option<BTreeSet<String>>,
    /// Largest quote notional of one order.
    pub max_order_notional: Option<Decimal>,
    /// Largest quote notional of all orders in one UTC day.
    pub max_daily_notional: Option<Decimal>,
    /// The asset the notional limits count in (`USDT`). An order's notional is in its
    /// symbol's quote asset, so while a limit applies, an order in a symbol quoted in
    /// another asset is denied ([`Action::is_quoted_in`](crate::Action::is_quoted_in)).
    /// `None` in policies made before keygate asked for it, and in those with no limit:
    /// limits then count in [`DEFAULT_NOTIONAL_ASSET`] ([`Policy::limits_asset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notional_asset: Option<String>,
    /// Requests per second.
    pub rate_per_second: Option<u32>,
    /// Where the client may withdraw to; a withdrawal anywhere else is denied, and with
    /// none listed, every withdrawal is.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub withdrawal_addresses: BTreeSet<WithdrawalDestination>,
    /// The most of each asset the client may withdraw in one UTC day, by the exchange's
    /// asset code (`BTC`). When set, an asset not listed cannot be withdrawn at all; when
    /// empty, withdrawals are bounded by scope and address only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_daily_withdrawal: BTreeMap<String, Decimal>,
}

/// The asset notional limits count in when a policy names none.
pub const DEFAULT_NOTIONAL_ASSET: &str = "USDT";

impl Policy {
    /// Whether the symbol list names `listed` (as a list names it: `usdm:BTCUSDT`);
    /// `false` without a list.
    pub fn lists_symbol(&self, listed: &str) -> bool {
        self.symbols
            .as_ref()
            .is_some_and(|symbols| symbols.contains(listed))
    }

    /// The asset the notional limits count in, when a limit applies: the policy's own,
    /// or [`DEFAULT_NOTIONAL_ASSET`] for a policy made before keygate asked for one
    /// (whose limits would otherwise compare numbers in whatever asset each symbol is
    /// quoted in: 500 BTC of ETHBTC under a limit of 500).
    pub fn limits_asset(&self) -> Option<&str> {
        let limited = self.max_order_notional.is_some() || self.max_daily_notional.is_some();
        match &self.notional_asset {
            Some(asset) => Some(asset),
            None => limited.then_some(DEFAULT_NOTIONAL_ASSET),
        }
    }
}

impl Default for Policy {
    /// Read-only, loopback only, no other limit.
    #[allow(
        clippy::expect_used,
        reason = "literal CIDRs, parsed by every test that makes a default policy"
    )]
    fn default() -> Self {
        Policy {
            scopes: Scopes::default(),
            allow_ips: vec![
                IpNet::V4("127.0.0.0/8".parse().expect("valid literal CIDR")),
                IpNet::V6("::1/128".parse().expect("valid literal CIDR")),
            ],
            symbols: None,
            max_order_notional: None,
            max_daily_notional: None,
            notional_asset: None,
            rate_per_second: None,
            withdrawal_addresses: BTreeSet::new(),
            max_daily_withdrawal: BTreeMap::new(),
        }
    }
}

/// A destination a client may withdraw to: an address and, for assets whose accounts share
/// one deposit address (XRP, XLM, EOS…), the tag or memo that picks the account; on a
/// list, also the network it may be reached on. Written `ADDRESS` or `ADDRESS/TAG`,
/// prefixed `NETWORK:` on a list (`ETH:0x…`, the exchange's upper-case network code: an
/// address such as `bitcoincash:q…` is not taken for one); compared exactly, case
/// included.
///
/// The network matters: the same address on another chain may be nobody's, or whoever
/// claims it there first (a multisig contract deployed on one chain only, say).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WithdrawalDestination {
    network: Option<String>,
    address: String,
    tag: Option<String>,
}

impl WithdrawalDestination {
    /// How keygate writes the destination `address` with `tag`, valid or not: `ADDRESS`,
    /// or `ADDRESS/TAG` (in a policy, an audit event, an exchange's listing alike).
    pub fn text(address: &str, tag: Option<&str>) -> String {
        match tag {
            Some(tag) => format!("{address}/{tag}"),
            None => address.to_owned(),
        }
    }

    /// The destination of a withdrawal to `address` with `tag`.
    pub fn new(address: &str, tag: Option<&str>) -> Result<WithdrawalDestination, Error> {
        let bad = |reason| Error::InvalidDestination {
            destination: WithdrawalDestination::text(address, tag),
            reason,
        };
        let printable = |s: &str| s.chars().all(|c| c.is_ascii_graphic());
        if address.is_empty() || address.len() > 128 || !printable(address) || address.contains('/')
        {
            return Err(bad(
                "an address is 1 to 128 printable characters, without `/`",
            ));
        }
        // A memo may be text (Stellar's, say), spaces included.
        if tag.is_some_and(|t| t.is_empty() || t.len() > 128 || t.chars().any(char::is_control)) {
            return Err(bad(
                "a tag is 1 to 128 characters, none of them control characters",
            ));
        }
        Ok(WithdrawalDestination {
            network: None,
            address: address.to_owned(),
            tag: tag.map(str::to_owned),
        })
    }

    /// The network a list entry names, if it names one.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// Whether this list entry allows a withdrawal to `requested` (a destination without a
    /// network) sent on `network`: the same address and tag, and, when the entry names a
    /// network, that network, named by the request (without one, the exchange picks the
    /// asset's default network, which may be another).
    pub fn allows(&self, requested: &WithdrawalDestination, network: Option<&str>) -> bool {
        self.address == requested.address
            && self.tag == requested.tag
            && self
                .network
                .as_deref()
                .is_none_or(|listed| network.is_some_and(|n| n.eq_ignore_ascii_case(listed)))
    }
}

/// Whether `prefix` is an exchange's network code (`ETH`, `BSC`, `ARBITRUM`): upper-case
/// letters, digits and `_`, starting with a letter.
fn is_network_code(prefix: &str) -> bool {
    prefix.len() <= 32
        && prefix.starts_with(|c: char| c.is_ascii_uppercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl FromStr for WithdrawalDestination {
    type Err = Error;

    fn from_str(s: &str) -> Result<WithdrawalDestination, Error> {
        let (network, rest) = match s.split_once(':') {
            Some((prefix, rest)) if is_network_code(prefix) => (Some(prefix), rest),
            _ => (None, s),
        };
        let mut destination = match rest.split_once('/') {
            Some((address, tag)) => WithdrawalDestination::new(address, Some(tag))?,
            None => WithdrawalDestination::new(rest, None)?,
        };
        destination.network = network.map(str::to_owned);
        Ok(destination)
    }
}

impl TryFrom<String> for WithdrawalDestination {
    type Error = Error;

    fn try_from(s: String) -> Result<WithdrawalDestination, Error> {
        s.parse()
    }
}

impl From<WithdrawalDestination> for String {
    fn from(d: WithdrawalDestination) -> String {
        d.to_string()
    }
}

impl fmt::Display for WithdrawalDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(network) = &self.network {
            write!(f, "{network}:")?;
        }
        f.write_str(&WithdrawalDestination::text(
            &self.address,
            self.tag.as_deref(),
        ))
    }
}

/// The network a source address stands for where one host is to count once: an IPv4
/// address itself, the /64 of an IPv6 one (one host is commonly given a whole /64, and
/// could otherwise appear from as many addresses as it likes). An IPv4 address written as
/// IPv6 (`::ffff:192.0.2.7`) is that IPv4 address.
pub fn source_network(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// The lifecycle state a client is in, as stored. Expiry is judged from the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    /// Requests are decided by policy.
    Active,
    /// Every request is denied until unfrozen.
    Frozen,
    /// Every request is denied, for good.
    Revoked,
}

impl ClientStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Frozen => "frozen",
            ClientStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for ClientStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ClientStatus::Active),
            "frozen" => Ok(ClientStatus::Frozen),
            "revoked" => Ok(ClientStatus::Revoked),
            _ => Err(Error::UnknownStatus {
                status: s.to_owned(),
            }),
        }
    }
}

/// The rule that denied a request. Named in the error the bot sees and in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The request is malformed (duplicate parameters, bad path, bad content type...).
    Malformed,
    /// The API key is unknown, or the signature or timestamp does not verify.
    Authentication,
    /// The signature was already used inside its window.
    Replay,
    /// The client is frozen.
    Frozen,
    /// The client is revoked.
    Revoked,
    /// The client's expiry has passed.
    Expired,
    /// The source address is not allowed.
    SourceIp,
    /// The endpoint is not known to keygate.
    UnknownEndpoint,
    /// The endpoint manages keys or accounts; no client may call it.
    KeyManagement,
    /// The client lacks the scope.
    Scope,
    /// The symbol is not on the client's list.
    Symbol,
    /// The order is larger than the per-order limit.
    OrderNotional,
    /// The order would exceed the daily limit.
    DailyNotional,
    /// A notional limit applies but no price could be found for the order.
    PriceUnavailable,
    /// The client is sending too fast.
    Rate,
    /// The withdrawal goes to an address not on the client's list.
    WithdrawalAddress,
    /// The withdrawal would take the client past its daily amount of the asset, or the
    /// asset is not one it may withdraw.
    WithdrawalLimit,
    /// Public market data, a signed read, a test order or the ticker call that prices an
    /// order would spend request weight that orders and cancels need; or a client's
    /// requests would pass its own share of the address's weight.
    WeightReserved,
    /// The exchange asked keygate's address to send nothing more for a while (its request
    /// weight used up, or a ban), and that while is not over: sending would prolong it.
    ExchangeBackOff,
    /// What the request needed from the exchange first (its order's price, the symbol of
    /// the order it names) could not be had: the exchange could not be reached, did not
    /// answer, or answered with a server error. Answered as the outage, which bots retry.
    ExchangeUnreachable,
    /// Large answers held for clients that read them slowly reached their limit, so a read
    /// or public call, which may bring another, was not sent.
    AnswerBacklog,
    /// The audit log could not be written, so the request was not forwarded.
    AuditUnavailable,
    /// The client closed its connection before the request was forwarded.
    ClientGone,
    /// The replay cache holds as many signatures as it may (a flood of signed requests
    /// inside their windows): the request was refused, not let through unchecked.
    ReplayCacheFull,
    /// The exchange, asked which symbol the order a request names is in (for a client
    /// held to a symbol list), answered that it has no such order; the request was
    /// answered so, and not forwarded.
    NoSuchOrder,
    /// The client changed while the request waited to be sent (for a price, the audit
    /// log, the exchange's clock): frozen, revoked, expired or given another policy. It
    /// was decided by rules that no longer hold.
    PolicyChanged,
    /// keygate failed while handling the request (a bug); it was not forwarded.
    Internal,
}

impl Rule {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Malformed => "malformed",
            Rule::Authentication => "authentication",
            Rule::Replay => "replay",
            Rule::Frozen => "frozen",
            Rule::Revoked => "revoked",
            Rule::Expired => "expired",
            Rule::SourceIp => "source_ip",
            Rule::UnknownEndpoint => "unknown_endpoint",
            Rule::KeyManagement => "key_management",
            Rule::Scope => "scope",
            Rule::Symbol => "symbol",
            Rule::OrderNotional => "order_notional",
            Rule::DailyNotional => "daily_notional",
            Rule::PriceUnavailable => "price_unavailable",
            Rule::Rate => "rate",
            Rule::WithdrawalAddress => "withdrawal_address",
            Rule::WithdrawalLimit => "withdrawal_limit",
            Rule::WeightReserved => "weight_reserved",
            Rule::ExchangeUnreachable => "exchange_unreachable",
            Rule::ExchangeBackOff => "exchange_back_off",
            Rule::AnswerBacklog => "answer_backlog",
            Rule::AuditUnavailable => "audit_unavailable",
            Rule::ClientGone => "client_gone",
            Rule::ReplayCacheFull => "replay_cache_full",
            Rule::NoSuchOrder => "no_such_order",
            Rule::PolicyChanged => "policy_changed",
            Rule::Internal => "internal",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was denied: the rule, and a message safe to show the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The rule that denied it.
    pub rule: Rule,
    /// A sentence naming the rule; never contains a secret.
    pub message: String,
    /// For a denial that time lifts (the rate), how long until the same request would
    /// pass, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Denial {
    /// A denial by `rule`, explained by `message`.
    pub fn new(rule: Rule, message: impl Into<String>) -> Denial {
        Denial {
            rule,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// This denial, lifted after `ms` milliseconds.
    pub fn lifted_after_ms(self, ms: u64) -> Denial {
        Denial {
            retry_after_ms: Some(ms),
            ..self
        }
    }
}

/// The verdict on one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Refuse it.
    Deny(Denial),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a restriction a later keygate stores was dropped by an earlier one
    /// reading the policy, which then allowed more than the policy says.
    #[test]
    fn a_policy_with_a_field_this_keygate_does_not_know_is_refused() {
        let mut stored = serde_json::to_value(Policy::default()).unwrap();
        assert!(serde_json::from_value::<Policy>(stored.clone()).is_ok());
        stored["max_daily_margin_loan"] = serde_json::json!("0");
        assert!(serde_json::from_value::<Policy>(stored).is_err());
    }

    #[test]
    fn one_ipv6_host_counts_as_one_source() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            source_network(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            source_network(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(source_network(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_network(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn withdrawal_destinations_round_trip_and_refuse_what_is_not_one() {
        for text in [
            "bc1qcold",
            "rXRPhot/123",
            "GABC/memo with/slash",
            "ETH:0x1111",
            "XRP:rXRPhot/123",
            // Not a network code: the whole is the address.
            "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a",
        ] {
            let parsed: WithdrawalDestination =
                text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(
                serde_json::from_str::<WithdrawalDestination>(&json).unwrap(),
                parsed
            );
        }
        let listed: WithdrawalDestination = "ETH:0x1111".parse().unwrap();
        assert_eq!(listed.network(), Some("ETH"));
        let cash: WithdrawalDestination = "bitcoincash:qpm2".parse().unwrap();
        assert_eq!(cash.network(), None);
        for bad in [
            "",
            "ETH:",
            "/123",
            "addr/",
            "with space",
            "addr/tab\t",
            &"x".repeat(129),
        ] {
            assert!(bad.parse::<WithdrawalDestination>().is_err(), "{bad:?}");
        }
    }
}
