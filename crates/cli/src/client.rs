//! `keygate client`: virtual keys, their policies and their lifecycle.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use keygate_core::{
    is_quoted_in, ClientStatus, Exchange, Market, Name, Policy, Scope, Scopes,
    WithdrawalDestination, DEFAULT_NOTIONAL_ASSET,
};
use keygate_store::{Client, ClientKeyMaterial, KeyType, NewClient, Store};
use keygate_vault::{redact, SecretString};
use rand::distributions::{Alphanumeric, DistString};
use rust_decimal::Decimal;
use serde_json::json;

use crate::audit_cmd::tell_if_put_back;
use crate::home::{admin_event, now_ms, parse_duration, read_bounded, Unlocked};
use crate::output::{
    escape_controls, print, print_after_change, print_json, print_table, rfc3339, tell,
    SecretOutput, CHANGE_MADE,
};

/// Length of generated virtual API keys and HMAC secrets (Binance's format).
const KEY_LEN: usize = 64;
/// Where `keygate serve` listens by default; used in the printed ccxt snippet.
const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// `keygate client …`
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Issue a virtual key bound to an account; prints its credentials once.
    Issue(Box<IssueArgs>),
    /// List clients.
    List(ListArgs),
    /// Show one client's full policy (never its secret).
    Show(ShowArgs),
    /// Deny every request of a client until it is unfrozen.
    Freeze(NameArg),
    /// Let a frozen client in again.
    Unfreeze(NameArg),
    /// Deny every request of a client, for good.
    Revoke(NameArg),
    /// Give a client a new key; the old one stays valid for --grace.
    Rotate(RotateArgs),
    /// Change what a client may do; its key stays. Each option given replaces that part
    /// of its policy. Takes effect within a second while `serve` runs.
    Update(Box<UpdateArgs>),
}

/// How a client signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// HMAC-SHA256 with a secret keygate generates.
    Hmac,
    /// Ed25519 with a private key only the bot holds (give --public-key).
    Ed25519,
}

/// `client issue`
#[derive(Args, Debug)]
pub struct IssueArgs {
    /// The account (real key) the client's requests are signed with.
    #[arg(long)]
    pub account: String,
    /// The client's name.
    #[arg(long)]
    pub name: String,
    /// What the client may do.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Lifetime (`30d`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    pub expires: String,
    /// How the client signs.
    #[arg(long, value_enum, default_value_t = KeyTypeArg::Hmac)]
    pub key_type: KeyTypeArg,
    /// The bot's Ed25519 public key (PEM `PUBLIC KEY` or base64 of 32 bytes).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// The gateway's base URL, for the printed ccxt snippet (as `serve` prints it, with or
    /// without the exchange's path, `/binance`).
    #[arg(long, value_name = "URL", default_value = DEFAULT_GATEWAY, value_parser = gateway_url)]
    pub gateway_url: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The policy options of `client issue` and `client update`. Each one given replaces
/// that part of the policy; the others keep it as it was (for `issue`, the secure default).
#[derive(Args, Debug, Default)]
pub struct PolicyArgs {
    /// Scopes: read, trade, withdraw, transfer (comma-separated); `issue` gives read when
    /// none is given. Transfer moves funds between the account's wallets and
    /// sub-accounts (managed sub-accounts' `withdraw` to the master account included:
    /// Binance names it a withdrawal, but it takes no address) and converts assets
    /// (convert, dust), with no symbol, notional or destination limit: give it only to a
    /// client that needs it.
    #[arg(long, value_delimiter = ',')]
    pub scope: Vec<String>,
    /// A network (CIDR) or address the client may call from; repeatable. `issue` allows
    /// loopback only when none is given.
    #[arg(long = "allow-ip", value_name = "CIDR")]
    pub allow_ip: Vec<String>,
    /// Symbols the client may trade, each in one market: spot as exchange ids (BTCUSDT)
    /// or ccxt form (BTC/USDT); futures in ccxt form (BTC/USDT:USDT, a USD-M perpetual)
    /// or prefixed (usdm:BTCUSDT); `any` for no list. (COIN-M's private endpoints are
    /// denied whatever the list.)
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Largest quote notional of one order (`none` for no limit).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_order_notional: Option<String>,
    /// Largest quote notional of all orders in one UTC day (`none` for no limit).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_daily_notional: Option<String>,
    /// The asset the notional limits count in; orders in symbols quoted in another are
    /// denied while a limit applies. USDT when a limit is set without it.
    #[arg(long, value_name = "ASSET")]
    pub notional_asset: Option<String>,
    /// Requests per second (`10/s` or `10`; `none` for no limit): in any one second,
    /// however it falls, at most this many; a batch counts each of its orders.
    #[arg(long, value_name = "N/s")]
    pub rate: Option<String>,
    /// An address the client may withdraw to, `NETWORK:ADDRESS` (`ETH:0x…`, the
    /// exchange's network code; a withdrawal must name that network), `/TAG` after it for
    /// the tag or memo of assets whose accounts share an address; repeatable. Required
    /// with the withdraw scope: a withdrawal anywhere else is denied.
    #[arg(long = "withdraw-address", value_name = "NETWORK:ADDRESS[/TAG]")]
    pub withdraw_addresses: Vec<WithdrawalDestination>,
    /// Accept `--withdraw-address ADDRESS` without a network, allowed on every network
    /// the asset has: the same address on another chain may be nobody's.
    #[arg(long)]
    pub insecure_withdraw_on_any_network: bool,
    /// The most of one asset the client may withdraw in a UTC day, `ASSET=AMOUNT`
    /// (`BTC=0.5`); repeatable. With any, an asset not listed cannot be withdrawn; `none`
    /// for no amount limit.
    #[arg(long = "max-daily-withdrawal", value_name = "ASSET=AMOUNT")]
    pub max_daily_withdrawals: Vec<String>,
}

/// `client list`
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `client show`
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The client's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A client name.
#[derive(Args, Debug)]
pub struct NameArg {
    /// The client's name.
    pub name: String,
}

/// `client update`
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The client's name.
    pub name: String,
    /// What changes.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Make the key expire this long from now (`90d`), an expired key too: the bot keeps
    /// its credentials.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Print the policy as JSON: `name`, `policy`, `expires_at`, and `changed` (false when
    /// the update changed nothing).
    #[arg(long)]
    pub json: bool,
}

/// `client rotate`
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The client's name.
    pub name: String,
    /// How long the old key keeps working (`24h`); the default ends it at once.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub grace: String,
    /// Rotate even while the key before the last rotation is in its grace period, which
    /// this ends at once (a client has one old key at a time).
    #[arg(long)]
    pub force: bool,
    /// Replace a key no bot has: the current key is retired at once, and the key before
    /// the last rotation keeps its grace period. For a rotation whose new credentials were
    /// never shown (the command killed, its output lost).
    #[arg(long, conflicts_with_all = ["force", "grace"])]
    pub keep_grace: bool,
    /// For Ed25519 clients: the new public key (default: keep the current one).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// The gateway's base URL, for the printed ccxt snippet (as `serve` prints it, with or
    /// without the exchange's path, `/binance`).
    #[arg(long, value_name = "URL", default_value = DEFAULT_GATEWAY, value_parser = gateway_url)]
    pub gateway_url: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a client subcommand.
pub fn run(mut vault: Unlocked, cmd: &ClientCmd) -> anyhow::Result<()> {
    match cmd {
        ClientCmd::Issue(a) => issue(&mut vault, a),
        ClientCmd::List(a) => list(&vault, a),
        ClientCmd::Show(a) => show(&vault, a),
        ClientCmd::Freeze(a) => set_status(&mut vault, &a.name, ClientStatus::Frozen),
        ClientCmd::Unfreeze(a) => set_status(&mut vault, &a.name, ClientStatus::Active),
        ClientCmd::Revoke(a) => set_status(&mut vault, &a.name, ClientStatus::Revoked),
        ClientCmd::Rotate(a) => rotate(&mut vault, a),
        ClientCmd::Update(a) => update(&mut vault, a),
    }
}

/// Warns when `policy` lets client `name` trade any market with no daily notional limit:
/// whoever holds its key can then pay the account away to their own orders in a thin
/// market (found by review; SECURITY.md says what bounds it).
fn warn_if_trading_is_unbounded(name: &Name, policy: &Policy) {
    if policy.scopes.contains(Scope::Trade)
        && policy.symbols.is_none()
        && policy.max_daily_notional.is_none()
    {
        tell(format_args!(
            "keygate: warning: client {name} may trade any market with no daily notional \
             limit: whoever holds its key can pay the account away by trading with their own \
             orders in a thin market. Give it --symbols (liquid markets) and \
             --max-daily-notional"
        ));
    }
}

fn issue(vault: &mut Unlocked, args: &IssueArgs) -> anyhow::Result<()> {
    let name: Name = args.name.parse()?;
    let account: Name = args.account.parse()?;
    let policy = args.policy.apply(&Policy::default())?;
    let now = now_ms();
    let expires_ms = expiry_from_now(&args.expires, now)?;
    let (material, secret) = match (args.key_type, &args.public_key) {
        (KeyTypeArg::Hmac, Some(_)) => bail!("--public-key is for --key-type ed25519"),
        (KeyTypeArg::Hmac, None) => {
            let secret = SecretString::new(random_alphanumeric());
            (ClientKeyMaterial::Hmac(secret.clone()), Some(secret))
        }
        (KeyTypeArg::Ed25519, None) => {
            bail!("--key-type ed25519 needs --public-key FILE (the bot keeps the private key)")
        }
        (KeyTypeArg::Ed25519, Some(path)) => {
            (ClientKeyMaterial::Ed25519(read_public_key(path)?), None)
        }
    };
    let public_key_fingerprint = match &material {
        ClientKeyMaterial::Ed25519(key) => Some(public_key_fingerprint(key)),
        ClientKeyMaterial::Hmac(_) => None,
    };
    let api_key = random_alphanumeric();
    let new = NewClient {
        name: name.clone(),
        account: account.clone(),
        api_key: api_key.clone(),
        material,
        policy: policy.clone(),
        expires_ms: Some(expires_ms),
    };
    let key_type = if secret.is_some() {
        KeyType::Hmac
    } else {
        KeyType::Ed25519
    };
    let mut detail = json!({
        "account": account.as_str(),
        "key_type": key_type.as_str(),
        "api_key": redact(&api_key),
        "policy": policy,
        "expires_at": rfc3339(expires_ms),
    });
    if let Some(fingerprint) = &public_key_fingerprint {
        detail["public_key_fingerprint"] = json!(fingerprint);
    }
    let issued = admin_event("client.issue", name.as_str(), detail);
    let exchange = vault
        .change(&[issued], |s, master| {
            s.insert_client(&new, master, now)?;
            Ok(s.account(&account)?.exchange)
        })
        .with_context(|| format!("issuing client {name}"))?;
    warn_if_trading_is_unbounded(&name, &policy);
    print_credentials(
        &Issued {
            name: &name,
            account: &account,
            exchange,
            api_key: &api_key,
            secret: secret.as_ref(),
            policy: &policy,
            key_type,
            public_key_fingerprint: public_key_fingerprint.as_deref(),
            expires_ms: Some(expires_ms),
            gateway_url: &args.gateway_url,
            frozen: false,
        },
        args.json,
        None,
    )
    .with_context(|| {
        format!(
            "client {name} was issued, but its credentials could not be shown; \
             `keygate client rotate {name}` gives it new ones"
        )
    })
}

/// The longest lifetime a key is given: a key that outlives its bot by decades is a key
/// nobody will remember to revoke.
const MAX_KEY_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// When a key given `--expires` (`90d`) from `now_ms` expires.
fn expiry_from_now(expires: &str, now_ms: u64) -> anyhow::Result<u64> {
    let lifetime = parse_duration(expires).context("--expires")?;
    if lifetime.is_zero() {
        bail!("--expires must be longer than zero");
    }
    if lifetime > MAX_KEY_LIFETIME {
        bail!("--expires is at most ten years (3660d); issue a new key when it ends");
    }
    Ok(now_ms.saturating_add(lifetime.as_millis() as u64))
}

impl PolicyArgs {
    /// `base` with the options given applied over it, checked as a whole: the withdraw
    /// scope needs addresses, and addresses and amounts need the scope. When the options
    /// take the withdraw scope away, `base`'s addresses and amounts go with it.
    /// Whether no option was given: applied, the policy stays as it is.
    fn changes_nothing(&self) -> bool {
        let PolicyArgs {
            scope,
            allow_ip,
            symbols,
            max_order_notional,
            max_daily_notional,
            notional_asset,
            rate,
            withdraw_addresses,
            insecure_withdraw_on_any_network,
            max_daily_withdrawals,
        } = self;
        scope.is_empty()
            && allow_ip.is_empty()
            && symbols.is_empty()
            && max_order_notional.is_none()
            && max_daily_notional.is_none()
            && notional_asset.is_none()
            && rate.is_none()
            && withdraw_addresses.is_empty()
            && !insecure_withdraw_on_any_network
            && max_daily_withdrawals.is_empty()
    }

    fn apply(&self, base: &Policy) -> anyhow::Result<Policy> {
        let mut policy = base.clone();
        if !self.scope.is_empty() {
            policy.scopes = self
                .scope
                .iter()
                .map(|s| Scope::from_str(s))
                .collect::<Result<Scopes, _>>()?;
            if !policy.scopes.contains(Scope::Read) {
                tell(format_args!(
                    "keygate: warning: --scope {} without read: ccxt and python-binance read \
                     the account before they trade (markets, balances, the order they \
                     placed), and every read is refused; add read unless the bot signs its \
                     own calls",
                    policy.scopes
                ));
            }
        }
        if !self.allow_ip.is_empty() {
            policy.allow_ips = self
                .allow_ip
                .iter()
                .map(|s| parse_net(s))
                .collect::<anyhow::Result<_>>()?;
        }
        let is_word = |s: &String, word: &str| s.trim().eq_ignore_ascii_case(word);
        if self.symbols.iter().any(|s| is_word(s, "none")) {
            bail!("--symbols none is ambiguous: --symbols any lifts the list, --scope names what the client may do");
        }
        if self.symbols.iter().any(|s| is_word(s, "any")) {
            if self.symbols.len() > 1 {
                bail!("--symbols any lifts the list; it cannot be given with symbols");
            }
            policy.symbols = None;
        } else if !self.symbols.is_empty() {
            let symbols = self
                .symbols
                .iter()
                .map(|s| normalize_symbol(s))
                .collect::<anyhow::Result<BTreeSet<_>>>()?;
            policy.symbols = Some(symbols);
        }
        if let Some(n) = &self.max_order_notional {
            policy.max_order_notional =
                unless_none(n, |n| parse_notional("--max-order-notional", n))?;
        }
        if let Some(n) = &self.max_daily_notional {
            policy.max_daily_notional =
                unless_none(n, |n| parse_notional("--max-daily-notional", n))?;
        }
        if let Some(asset) = &self.notional_asset {
            let asset = asset.trim().to_ascii_uppercase();
            if asset.is_empty()
                || !asset.bytes().all(|b| b.is_ascii_alphanumeric())
                || asset == "NONE"
                || asset == "ANY"
            {
                bail!("--notional-asset {asset:?} is not an asset code (USDT, BTC)");
            }
            policy.notional_asset = Some(asset);
        }
        let limited = policy.max_order_notional.is_some() || policy.max_daily_notional.is_some();
        if limited && policy.notional_asset.is_none() {
            // Named from now on, as the gateway counts it (`Policy::limits_asset`).
            policy.notional_asset = Some(DEFAULT_NOTIONAL_ASSET.to_owned());
        }
        if let (true, Some(asset), Some(symbols)) =
            (limited, &policy.notional_asset, &policy.symbols)
        {
            let elsewhere: Vec<&str> = symbols
                .iter()
                .map(String::as_str)
                // A listed symbol is `ID` or `MARKET:ID`.
                .filter(|listed| !is_quoted_in(listed.rsplit(':').next().unwrap_or(listed), asset))
                .collect();
            if !elsewhere.is_empty() {
                bail!(
                    "the notional limits count in {asset}, and {} {} not quoted in it: every \
                     order in {} would be denied; list symbols quoted in {asset}, or pass \
                     --notional-asset",
                    elsewhere.join(", "),
                    if elsewhere.len() == 1 { "is" } else { "are" },
                    if elsewhere.len() == 1 { "it" } else { "them" }
                );
            }
        }
        if let Some(rate) = &self.rate {
            policy.rate_per_second = unless_none(rate, parse_rate)?;
        }
        let may_withdraw = policy.scopes.contains(Scope::Withdraw);
        if !self.withdraw_addresses.is_empty() {
            if !may_withdraw {
                bail!("--withdraw-address needs the withdraw scope (--scope read,withdraw)");
            }
            let any_network = self
                .withdraw_addresses
                .iter()
                .find(|d| d.network().is_none());
            if let (Some(any_network), false) = (any_network, self.insecure_withdraw_on_any_network)
            {
                // `eth:0x…` reads as an address with a colon in it: addresses may have one
                // (`bitcoincash:q…`), network codes are upper case.
                if let Some((prefix, _)) = any_network.to_string().split_once(':') {
                    if prefix.chars().any(|c| c.is_ascii_lowercase()) {
                        bail!(
                            "--withdraw-address {any_network} names no network: network codes \
                             are upper case ({}:…); a lower-case prefix is read as part of the \
                             address",
                            prefix.to_ascii_uppercase()
                        );
                    }
                }
                bail!(
                    "--withdraw-address {any_network} names no network, and the same address on \
                     another chain may be nobody's: name the one to withdraw on \
                     (--withdraw-address NETWORK:{any_network}, with the exchange's network \
                     code: BTC, ETH, TRX…), or allow every network with \
                     --insecure-withdraw-on-any-network"
                );
            }
            policy.withdrawal_addresses = self.withdraw_addresses.iter().cloned().collect();
        } else if self.insecure_withdraw_on_any_network {
            bail!("--insecure-withdraw-on-any-network goes with --withdraw-address");
        }
        if self
            .max_daily_withdrawals
            .iter()
            .any(|s| is_word(s, "none"))
        {
            if self.max_daily_withdrawals.len() > 1 {
                bail!(
                    "--max-daily-withdrawal none lifts the limits; it cannot be given with limits"
                );
            }
            policy.max_daily_withdrawal.clear();
        } else if !self.max_daily_withdrawals.is_empty() {
            if !may_withdraw {
                bail!("--max-daily-withdrawal needs the withdraw scope (--scope read,withdraw)");
            }
            policy.max_daily_withdrawal.clear();
            for limit in &self.max_daily_withdrawals {
                let (asset, amount) = parse_withdrawal_limit(limit)?;
                if policy.max_daily_withdrawal.insert(asset, amount).is_some() {
                    bail!("--max-daily-withdrawal {limit:?}: that asset is limited twice");
                }
            }
        }
        if !may_withdraw {
            policy.withdrawal_addresses.clear();
            policy.max_daily_withdrawal.clear();
        } else if policy.withdrawal_addresses.is_empty() {
            bail!(
                "the withdraw scope needs the addresses the client may withdraw to: \
                 --withdraw-address NETWORK:ADDRESS (or NETWORK:ADDRESS/TAG), once for each"
            );
        }
        Ok(policy)
    }
}

/// `parse(text)`, or `None` for the word `none`.
fn unless_none<T>(
    text: &str,
    parse: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    match text.trim() {
        none if none.eq_ignore_ascii_case("none") => Ok(None),
        text => parse(text).map(Some),
    }
}

/// A CIDR, or a bare address meaning /32 (IPv4) or /128 (IPv6).
fn parse_net(s: &str) -> anyhow::Result<IpNet> {
    parse_net_as_written(s).map(ipv4_as_ipv4)
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it is
/// (`10.0.0.0/8`): the gateway sees an IPv4 peer as such whatever socket it came in on,
/// so the mapped form would never match.
pub(crate) fn ipv4_as_ipv4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        net => net,
    }
}

fn parse_net_as_written(s: &str) -> anyhow::Result<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        // `10.0.0.1/8` is a typo for one of two very different allow lists: which one is
        // for the operator to say, not for keygate to guess.
        if net.trunc() != net {
            bail!(
                "--allow-ip {s}: the address has bits set past the prefix; write the network \
                 ({}) or the one address ({})",
                net.trunc(),
                IpNet::from(net.addr())
            );
        }
        return Ok(net);
    }
    let addr: IpAddr = s
        .parse()
        .with_context(|| format!("--allow-ip {s:?} is neither a CIDR nor an IP address"))?;
    Ok(IpNet::from(addr))
}

/// A symbol as the policy lists it ([`Market::listed_symbol`]): the market's id, prefixed
/// with its market unless spot. `BTCUSDT`, `btcusdt`, `BTC/USDT` → `BTCUSDT` (spot);
/// `BTC/USDT:USDT`, `usdm:BTCUSDT` → `usdm:BTCUSDT` (USD-M perpetual);
/// `BTC/USDT:USDT-250328` → `usdm:BTCUSDT_250328` (dated). A COIN-M symbol (`BTC/USD:BTC`,
/// `coinm:BTCUSD_PERP`) is refused: keygate denies COIN-M's private endpoints. So is `_`
/// anywhere but before a dated contract's expiry (`BTC_USDT`), with the forms to write.
fn normalize_symbol(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let bad = || {
        anyhow::anyhow!("--symbols {s:?} is not a symbol (use BTCUSDT, BTC/USDT or BTC/USDT:USDT)")
    };
    let (market, id) = match (s.split_once('/'), s.split_once(':')) {
        // ccxt's unified form: BASE/QUOTE, or BASE/QUOTE:SETTLE[-EXPIRY] for futures.
        // Neither half may be empty (found by review: `$BASE/$QUOTE` with a variable
        // unset listed `BTC` or `USDT`, a market that is not there).
        (Some((base, rest)), _)
            if base.is_empty() || rest.split(':').next().is_none_or(str::is_empty) =>
        {
            return Err(bad());
        }
        (Some((base, rest)), _) => match rest.split_once(':') {
            None => (Market::Spot, format!("{base}{rest}")),
            Some((quote, settle)) => {
                let (settle, expiry) = match settle.split_once('-') {
                    Some((settle, expiry)) => (settle, Some(expiry)),
                    None => (settle, None),
                };
                if settle.eq_ignore_ascii_case(quote) {
                    let id = format!("{base}{quote}");
                    let id = expiry.map_or_else(|| id.clone(), |e| format!("{id}_{e}"));
                    (Market::Usdm, id)
                } else if settle.eq_ignore_ascii_case(base) {
                    let expiry = expiry.unwrap_or("PERP");
                    (Market::Coinm, format!("{base}{quote}_{expiry}"))
                } else {
                    return Err(bad());
                }
            }
        },
        (None, Some((prefix, id))) => {
            let market = [Market::Usdm, Market::Coinm, Market::Spot]
                .into_iter()
                .find(|m| m.as_str().eq_ignore_ascii_case(prefix))
                .ok_or_else(bad)?;
            (market, id.to_owned())
        }
        (None, None) => (Market::Spot, s.to_owned()),
    };
    let id = id.to_ascii_uppercase();
    // An exchange id: letters and digits (at most 32), with at most one `_` before a
    // dated contract's expiry (`BTCUSDT_260327`); anything else matches no market.
    let (pair, expiry) = id
        .split_once('_')
        .map_or((id.as_str(), None), |(p, e)| (p, Some(e)));
    let alphanumeric =
        |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric());
    if id.len() > 32 || !alphanumeric(pair) || expiry.is_some_and(|e| !alphanumeric(e)) {
        return Err(bad());
    }
    if market == Market::Coinm {
        bail!(
            "--symbols {s:?} is a COIN-M symbol: keygate does not classify COIN-M's private \
             endpoints yet and denies them all, so listing it would allow nothing"
        );
    }
    // Spot ids have no `_`, USD-M ids one only before a dated contract's expiry (YYMMDD):
    // `BTC_USDT` would be listed as a symbol no market has, and allow nothing.
    if let Some(after) = expiry {
        let is_expiry = after.len() == 6 && after.bytes().all(|b| b.is_ascii_digit());
        let is_quote = after.bytes().all(|b| b.is_ascii_alphabetic());
        match market {
            Market::Usdm if is_expiry => {}
            Market::Spot if is_expiry => bail!(
                "--symbols {s:?} is a dated USD-M contract's id, not a spot symbol: write \
                 usdm:{id} (or ccxt's BASE/QUOTE:QUOTE-{after})"
            ),
            _ if after == "PERP" => bail!(
                "--symbols {s:?}: a USD-M perpetual's id has no _PERP: write usdm:{pair} (or \
                 ccxt's BASE/QUOTE:QUOTE)"
            ),
            Market::Spot if is_quote => bail!(
                "--symbols {s:?} matches no market: a spot id has no `_`; write the \
                 exchange's id ({pair}{after}) or ccxt's ({pair}/{after})"
            ),
            _ if is_quote => bail!(
                "--symbols {s:?} matches no market: a USD-M id has `_` only before a dated \
                 contract's expiry; write the exchange's id (usdm:{pair}{after}) or ccxt's \
                 ({pair}/{after}:{after})"
            ),
            _ => bail!(
                "--symbols {s:?} matches no market: `_` comes only before a dated USD-M \
                 contract's expiry, 6 digits (usdm:BTCUSDT_250328); a spot id has none"
            ),
        }
    }
    Ok(market.listed_symbol(&id))
}

/// A positive amount as digits with at most one point (`1000`, `0.5`), as the request
/// path reads an order's numbers: no exponent, sign or separator (found by review: `1e5`
/// and `1_000` were taken), and no digit rounded away (a positive amount too small to
/// keep was refused as not greater than zero).
fn parse_notional(flag: &str, s: &str) -> anyhow::Result<Decimal> {
    let written = s.trim();
    if written.starts_with('-') {
        bail!("{flag} must be greater than zero");
    }
    let (whole, fraction) = written.split_once('.').unwrap_or((written, "0"));
    let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || !is_digits(fraction) {
        bail!("{flag} {s:?} is not an amount: write digits and at most one point, such as 1000 or 0.5");
    }
    // Zeros that end a fraction change nothing; any other digit past what a Decimal
    // holds would be rounded away, or the number is larger than one holds.
    let exact = match written.split_once('.') {
        Some((whole, fraction)) => match fraction.trim_end_matches('0') {
            "" => whole.to_owned(),
            fraction => format!("{whole}.{fraction}"),
        },
        None => written.to_owned(),
    };
    let n = Decimal::from_str_exact(&exact).with_context(|| {
        format!("{flag} {s:?} is too large, or has more decimal places than keygate keeps (28)")
    })?;
    if n <= Decimal::ZERO {
        bail!("{flag} must be greater than zero");
    }
    Ok(n.normalize())
}

/// `BTC=0.5` as (`BTC`, 0.5). Assets are the exchange's codes, upper case.
fn parse_withdrawal_limit(s: &str) -> anyhow::Result<(String, Decimal)> {
    let flag = "--max-daily-withdrawal";
    let Some((asset, amount)) = s.split_once('=') else {
        bail!("{flag} {s:?}: use ASSET=AMOUNT, such as BTC=0.5");
    };
    let asset = asset.trim();
    if asset.is_empty()
        || asset.len() > 20
        || !asset
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        bail!("{flag} {s:?}: the asset is an exchange code in capitals and digits, such as BTC");
    }
    Ok((asset.to_owned(), parse_notional(flag, amount)?))
}

/// `--gateway-url`: an http(s) URL, without the exchange's path (`/binance`) the snippet
/// adds (the URLs `serve` prints have it), nor anything that would break out of the
/// snippet's quotes.
fn gateway_url(text: &str) -> Result<String, String> {
    let url = text.trim_end_matches('/');
    let url = Exchange::ALL
        .iter()
        .find_map(|e| url.strip_suffix(e.as_str())?.strip_suffix('/'))
        .unwrap_or(url)
        .trim_end_matches('/');
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("use an http:// or https:// URL, such as http://127.0.0.1:8080")?;
    if host.is_empty() || host.starts_with('/') {
        return Err("the URL names no host".into());
    }
    if let Some(c) = url
        .chars()
        .find(|&c| !c.is_ascii_graphic() || matches!(c, '\'' | '"' | '\\' | '?' | '#'))
    {
        return Err(format!("{c:?} has no place in the gateway's base URL"));
    }
    Ok(url.to_owned())
}

fn parse_rate(s: &str) -> anyhow::Result<u32> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    let n: u32 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--rate {s:?}: use requests per second, N/s, such as 10/s"))?;
    if n == 0 {
        bail!("--rate must be at least 1/s");
    }
    Ok(n)
}

/// The most a public key file may hold: a PEM public key is a few hundred bytes.
const MAX_PUBLIC_KEY_FILE_LEN: u64 = 64 * 1024;

/// Reads an Ed25519 public key: PEM `PUBLIC KEY` (SPKI) or base64 of the 32 raw bytes.
fn read_public_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let text = String::from_utf8(read_bounded(path, MAX_PUBLIC_KEY_FILE_LEN)?)
        .map_err(|_| anyhow::anyhow!("{} is not text: not a public key", path.display()))?;
    if text.contains("PRIVATE KEY") {
        bail!(
            "{} holds a private key; give keygate only the public key (openssl pkey -pubout)",
            path.display()
        );
    }
    let key = if text.contains("-----BEGIN PUBLIC KEY-----") {
        // The decoder's error names the OID it wanted (Ed25519's) as the one it refused.
        ed25519_dalek::VerifyingKey::from_public_key_pem(text.trim()).map_err(|_| {
            anyhow::anyhow!(
                "{} holds no Ed25519 public key (a key of another algorithm, or a damaged \
                 one); give the PEM PUBLIC KEY of the bot's Ed25519 key",
                path.display()
            )
        })?
    } else {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            // The decoder's error would quote a character of the file, which may be
            // the wrong file, holding a secret.
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} is not an Ed25519 public key: give a PEM PUBLIC KEY or the base64 of \
                     its 32 bytes",
                    path.display()
                )
            })?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{} decodes to {} bytes; an Ed25519 public key has 32",
                path.display(),
                raw.len()
            )
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{} is not a valid Ed25519 public key", path.display()))?
    };
    // The gateway verifies strictly: a small-order key verifies no signature at all.
    if key.is_weak() {
        bail!(
            "{} is a weak Ed25519 public key (of small order), under which no signature \
             verifies; generate the bot's key pair again",
            path.display()
        );
    }
    Ok(key.to_bytes())
}

/// A short fingerprint of an Ed25519 public key: the first 16 hex digits of the SHA-256
/// of its 32 bytes. Not secret, as the key is not; shown and recorded so that the operator
/// can compare the key keygate holds with the bot's, and catch a file that was not the
/// bot's public key (the base64 of a private seed is 32 bytes too, and most are taken as
/// a point).
fn public_key_fingerprint(key: &[u8; 32]) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(key)[..8])
}

fn random_alphanumeric() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, KEY_LEN)
}

/// The status a client is in now: `untagged` when an earlier keygate wrote it and
/// `keygate upgrade` has not tagged it yet, `tampered` when its record was changed without
/// the master key (the gateway refuses both, and no stored status of them can be
/// believed), its stored status, or `expired` once its expiry passed.
/// `verified` is what [`Client::verify_record`] said of it.
fn effective_status(c: &Client, now: u64, verified: bool) -> &'static str {
    if !c.is_tagged() {
        return "untagged";
    }
    if !verified {
        return "tampered";
    }
    match c.status {
        ClientStatus::Active if c.expires_ms.is_some_and(|e| e <= now) => "expired",
        s => s.as_str(),
    }
}

/// Whether the account `c` was issued for is still there. An account removed and added
/// again under its label is another account: the clients the removal revoked, issued
/// before the new one was added, stay the removed one's. (Revoked clients only, so that a
/// clock set back between `account add` and `client issue` cannot disown a working one.)
fn has_its_account(c: &Client, accounts: &[(String, u64)]) -> bool {
    accounts.iter().any(|(label, created_ms)| {
        label == c.account.as_str()
            && !(c.status == ClientStatus::Revoked && c.created_ms < *created_ms)
    })
}

/// A client's account as `client list` and `show` print it: marked when it was removed
/// (its clients stay, revoked).
fn account_shown(c: &Client, account_exists: bool) -> String {
    if account_exists {
        c.account.to_string()
    } else {
        format!("{} (removed)", c.account)
    }
}

fn client_json(c: &Client, now: u64, verified: bool, account_exists: bool) -> serde_json::Value {
    json!({
        "name": c.name,
        "account": c.account,
        "account_removed": !account_exists,
        "status": effective_status(c, now, verified),
        "stored_status": c.status.as_str(),
        "record_verified": verified,
        "key_type": c.key_type.as_str(),
        "api_key": redact(&c.api_key),
        "scopes": c.policy.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "created_at": rfc3339(c.created_ms),
        "expires_at": c.expires_ms.map(rfc3339),
        "previous_api_key": c.previous_api_key.as_deref().map(redact),
        "previous_valid_until": c.previous_key_until().map(rfc3339),
        // Whether that key still works: its grace period has not ended.
        "previous_key_works": c.previous_key_until().is_some_and(|until| until > now),
    })
}

fn list(vault: &Unlocked, args: &ListArgs) -> anyhow::Result<()> {
    let (mut clients, mut unreadable) = (Vec::new(), 0);
    for row in vault.store.client_rows().context("reading clients")? {
        match row {
            Ok(client) => clients.push(client),
            // Listed, not fatal: an unreadable row is exactly what the operator must see.
            Err(e) => {
                unreadable += 1;
                tell(format_args!(
                    "keygate: a client does not read (the gateway refuses it): {}",
                    escape_controls(&e.to_string())
                ));
            }
        }
    }
    // Each row may verify on its own while the table does not: one was put back.
    if let Err(e @ keygate_store::Error::Unsealed { .. }) = vault.store.check_seal(&vault.master) {
        tell(format_args!("keygate: {e}"));
    }
    tell_if_put_back(vault, "clients are listed");
    let accounts = vault.store.account_labels().context("reading accounts")?;
    let account_exists = |c: &Client| has_its_account(c, &accounts);
    let now = now_ms();
    if args.json {
        let items: Vec<_> = clients
            .iter()
            .map(|c| {
                let verified = c.verify_record(&vault.master).is_ok();
                client_json(c, now, verified, account_exists(c))
            })
            .collect();
        return print_json(&items);
    }
    // Not "no clients" when there are some that do not read (found by review).
    if clients.is_empty() && unreadable == 0 {
        return print(|out| {
            writeln!(
                out,
                "no clients; issue one with `keygate client issue --account LABEL --name NAME`"
            )
        });
    }
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                account_shown(c, account_exists(c)),
                effective_status(c, now, c.verify_record(&vault.master).is_ok()).to_owned(),
                c.policy.scopes.to_string(),
                c.key_type.as_str().to_owned(),
                c.expires_ms.map_or_else(|| "never".into(), rfc3339),
                redact(&c.api_key),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME", "ACCOUNT", "STATUS", "SCOPES", "KEY TYPE", "EXPIRES", "API KEY",
        ],
        &rows,
    )
}

fn show(vault: &Unlocked, args: &ShowArgs) -> anyhow::Result<()> {
    let name: Name = args.name.parse()?;
    let c = vault
        .store
        .client(&name)
        .with_context(|| format!("looking up client {name}"))?;
    tell_if_put_back(vault, "the client is shown");
    let now = now_ms();
    let verified = c.verify_record(&vault.master).is_ok();
    let accounts = vault.store.account_labels().context("reading accounts")?;
    let account_exists = has_its_account(&c, &accounts);
    let mut value = client_json(&c, now, verified, account_exists);
    value["policy"] = serde_json::to_value(&c.policy).context("encoding the policy")?;
    if args.json {
        return print_json(&value);
    }
    print(|out| {
        let p = &c.policy;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        writeln!(out, "name:               {}", c.name)?;
        writeln!(
            out,
            "account:            {}",
            account_shown(&c, account_exists)
        )?;
        writeln!(
            out,
            "status:             {}",
            effective_status(&c, now, verified)
        )?;
        if !c.is_tagged() {
            writeln!(
                out,
                "record:             NOT TAGGED (written by an earlier keygate); the gateway \
                 refuses this client until `keygate upgrade` tags it."
            )?;
        } else if !verified {
            writeln!(
                out,
                "record:             CHANGED WITHOUT THE MASTER KEY; the gateway refuses this \
                 client. Revoke it, issue a new one, and find out who can write the database."
            )?;
        }
        writeln!(out, "key type:           {}", c.key_type.as_str())?;
        writeln!(
            out,
            "api key:            {}",
            escape_controls(&redact(&c.api_key))
        )?;
        writeln!(out, "created:            {}", rfc3339(c.created_ms))?;
        writeln!(
            out,
            "expires:            {}",
            c.expires_ms.map_or_else(|| "never".into(), rfc3339)
        )?;
        if let (Some(prev), Some(until)) = (&c.previous_api_key, c.previous_key_until()) {
            let works = if until > now_ms() {
                "valid until"
            } else {
                "ended"
            };
            writeln!(
                out,
                "previous key:       {} ({works} {})",
                escape_controls(&redact(prev)),
                rfc3339(until)
            )?;
        }
        writeln!(out, "scopes:             {}", p.scopes)?;
        let nets: Vec<String> = p.allow_ips.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "allow-ip:           {}",
            if nets.is_empty() {
                "nowhere".into()
            } else {
                nets.join(", ")
            }
        )?;
        // What the policy names is text from the database, escaped: a row edited to hold a
        // terminal sequence must not drive the terminal (it is shown as tampered).
        writeln!(
            out,
            "symbols:            {}",
            p.symbols.as_ref().map_or_else(
                || "any".into(),
                |s| escape_controls(&s.iter().cloned().collect::<Vec<_>>().join(",")).into_owned()
            )
        )?;
        let in_asset = |d: Decimal| {
            let asset = p.limits_asset().unwrap_or(DEFAULT_NOTIONAL_ASSET);
            format!("{d} {}", escape_controls(asset))
        };
        writeln!(
            out,
            "max order notional: {}",
            opt(p.max_order_notional.map(in_asset))
        )?;
        writeln!(
            out,
            "max daily notional: {}",
            opt(p.max_daily_notional.map(in_asset))
        )?;
        writeln!(
            out,
            "rate:               {}",
            opt(p.rate_per_second.map(|r| format!("{r}/s")))
        )?;
        if p.scopes.contains(Scope::Withdraw) && p.withdrawal_addresses.is_empty() {
            writeln!(
                out,
                "withdraw to:        nowhere (no address listed: every withdrawal is denied)"
            )?;
        }
        if !p.withdrawal_addresses.is_empty() {
            let addresses: Vec<String> = p
                .withdrawal_addresses
                .iter()
                .map(|d| match d.network() {
                    Some(_) => d.to_string(),
                    None => format!("{d} (any network)"),
                })
                .collect();
            writeln!(
                out,
                "withdraw to:        {}",
                escape_controls(&addresses.join(", "))
            )?;
        }
        if !p.max_daily_withdrawal.is_empty() {
            let limits: Vec<String> = p
                .max_daily_withdrawal
                .iter()
                .map(|(asset, amount)| format!("{amount} {asset}"))
                .collect();
            writeln!(
                out,
                "withdraw per day:   {}",
                escape_controls(&limits.join(", "))
            )?;
        }
        Ok(())
    })
}

fn set_status(vault: &mut Unlocked, name: &str, to: ClientStatus) -> anyhow::Result<()> {
    let name: Name = name.parse()?;
    let c = vault
        .store
        .client(&name)
        .with_context(|| format!("looking up client {name}"))?;
    let change = match to {
        ClientStatus::Frozen => "client.freeze",
        ClientStatus::Active => "client.unfreeze",
        ClientStatus::Revoked => "client.revoke",
    };
    // A record changed without the master key says nothing true, not even that it is
    // revoked: revoking it is always allowed, and the only change allowed.
    if let Err(e) = c.verify_record(&vault.master) {
        if to != ClientStatus::Revoked {
            if !c.is_tagged() {
                bail!("client {name} has no tag yet: review and tag it with `keygate upgrade`");
            }
            return Err(e).with_context(|| {
                format!("client {name} was changed without the master key; revoke it")
            });
        }
    } else {
        if c.status == ClientStatus::Revoked && to != ClientStatus::Revoked {
            bail!("client {name} is revoked; revocation is final (issue a new client instead)");
        }
        if c.status == to {
            return print(|out| writeln!(out, "client {name} is already {}", to.as_str()));
        }
        if to == ClientStatus::Active && c.status != ClientStatus::Frozen {
            bail!("client {name} is not frozen");
        }
    }
    let mut detail = json!({ "from": c.status.as_str(), "to": to.as_str() });
    // An unfreeze brings back the key a rotation while frozen kept for its grace (found
    // by review: said nowhere, so an operator who froze, rotated and unfroze took the
    // leaked key for dead). Said, and recorded for the alert.
    let previous_in_grace = match (&c.previous_api_key, c.previous_key_until()) {
        (Some(previous), Some(until)) if to == ClientStatus::Active && until > now_ms() => {
            detail["previous_key"] = json!(redact(previous));
            detail["previous_key_until"] = json!(rfc3339(until));
            Some((redact(previous), rfc3339(until)))
        }
        _ => None,
    };
    // An expired client stays refused, unfrozen or not: said, and recorded for the
    // alert, which would otherwise say its key works again (found by review).
    let expired = c
        .expires_ms
        .filter(|&at| to == ClientStatus::Active && at <= now_ms())
        .map(rfc3339);
    if let Some(at) = &expired {
        detail["expired_at"] = json!(at);
    }
    let changed = admin_event(change, name.as_str(), detail);
    vault
        .change(&[changed], |s, master| {
            // What the unfreeze says of a previous key was read above: a rotation
            // committed since would make it untrue (found by review). A freeze or a
            // revoke goes through whatever changed: it only stops more.
            if to == ClientStatus::Active {
                unchanged_since_read(s, &c)?;
            }
            s.set_client_status(&name, c.status, to, master)
        })
        .with_context(|| format!("setting client {name} to {}", to.as_str()))?;
    let verb = match to {
        ClientStatus::Frozen => "frozen",
        ClientStatus::Active => "unfrozen",
        ClientStatus::Revoked => "revoked",
    };
    print_after_change(|out| {
        writeln!(out, "client {name} {verb}")?;
        if let Some(at) = &expired {
            writeln!(
                out,
                "it expired at {at}, and its key is still refused; `keygate client update \
                 {name} --expires 90d` makes it work again"
            )?;
        }
        if let Some((previous, until)) = &previous_in_grace {
            writeln!(
                out,
                "its key before the last rotation ({previous}) works again too, until \
                 {until}; to end it now, rotate again with --force (and --grace to keep the \
                 current key working meanwhile)"
            )?;
        }
        Ok(())
    })
}

fn update(vault: &mut Unlocked, args: &UpdateArgs) -> anyhow::Result<()> {
    let name: Name = args.name.parse()?;
    let c = vault
        .store
        .client(&name)
        .with_context(|| format!("looking up client {name}"))?;
    if args.policy.changes_nothing() && args.expires.is_none() {
        bail!(
            "nothing to change: give what changes, such as --max-order-notional N or \
             --expires 90d (`keygate client update --help` lists them)"
        );
    }
    if c.status == ClientStatus::Revoked {
        bail!("client {name} is revoked; revocation is final (issue a new client instead)");
    }
    let policy = args.policy.apply(&c.policy)?;
    let expires_ms = args
        .expires
        .as_deref()
        .map(|expires| expiry_from_now(expires, now_ms()))
        .transpose()?;
    let policy_changes = policy != c.policy;
    if !policy_changes && expires_ms.is_none() {
        if args.json {
            return print_json(&json!({
                "name": name.as_str(),
                "policy": policy,
                "expires_at": c.expires_ms.map(rfc3339),
                "changed": false,
            }));
        }
        return print(|out| writeln!(out, "client {name} unchanged"));
    }
    let mut detail = json!({ "from": c.policy, "to": policy });
    if let Some(expires_ms) = expires_ms {
        detail["expires_at"] = json!({
            "from": c.expires_ms.map(rfc3339),
            "to": rfc3339(expires_ms),
        });
        // An expired client given a new expiry works again: recorded for the alert.
        if c.expires_ms.is_some_and(|at| at <= now_ms()) && c.status == ClientStatus::Active {
            detail["revives_expired"] = json!(true);
        }
    }
    let changed = admin_event("client.update", name.as_str(), detail);
    vault
        .change(&[changed], |s, master| {
            // The new policy was made from the row read above: another command that
            // changed it since would be undone without a word.
            unchanged_since_read(s, &c)?;
            if policy_changes {
                s.set_client_policy(&name, &policy, master)?;
            }
            match expires_ms {
                Some(expires_ms) => s.set_client_expiry(&name, expires_ms, master),
                None => Ok(()),
            }
        })
        .with_context(|| format!("updating client {name}"))?;
    if policy_changes {
        warn_if_trading_is_unbounded(&name, &policy);
    }
    let expires_at = expires_ms.or(c.expires_ms).map(rfc3339);
    if args.json {
        return print_json(&json!({
            "name": name.as_str(),
            "policy": policy,
            "expires_at": expires_at,
            "changed": true,
        }))
        .context(CHANGE_MADE);
    }
    print_after_change(|out| {
        writeln!(
            out,
            "client {name} updated; `keygate client show {name}` shows its policy"
        )?;
        if let Some(expires_ms) = expires_ms {
            writeln!(out, "its key now expires at {}", rfc3339(expires_ms))?;
        }
        Ok(())
    })
}

fn rotate(vault: &mut Unlocked, args: &RotateArgs) -> anyhow::Result<()> {
    let name: Name = args.name.parse()?;
    let grace = parse_duration(&args.grace).context("--grace")?;
    if grace > MAX_KEY_LIFETIME {
        bail!("--grace is at most ten years (3660d)");
    }
    let c = vault
        .store
        .client(&name)
        .with_context(|| format!("looking up client {name}"))?;
    if c.status == ClientStatus::Revoked {
        bail!("client {name} is revoked; revocation is final");
    }
    // A client that is not revoked has its account (`account remove` revokes them).
    let exchange = vault
        .store
        .account(&c.account)
        .with_context(|| format!("looking up client {name}'s account {}", c.account))?
        .exchange;
    // New credentials that would be refused from the first request help nobody.
    if let Some(expired) = c.expires_ms.filter(|&e| e <= now_ms()) {
        bail!(
            "client {name} expired at {}; extend it first with `keygate client update {name} \
             --expires 90d` (its key works again), then rotate it if you want a new key",
            rfc3339(expired)
        );
    }
    // A client keeps one old key: a second rotation would drop the one whose grace
    // period the first promised, under bots that may still sign with it.
    let now = now_ms();
    let in_grace = match (&c.previous_api_key, c.previous_key_until()) {
        (Some(previous), Some(until)) if until > now => Some((previous, until)),
        _ => None,
    };
    if let Some((previous, until)) = in_grace.filter(|_| !args.force && !args.keep_grace) {
        bail!(
            "client {name}'s key before its last rotation ({}) works until {}, as that \
             rotation promised; rotating again would end it at once. Wait until then, \
             pass --force to rotate now and end it, or, when the last rotation's \
             credentials were never shown, --keep-grace to replace them and keep it",
            redact(previous),
            rfc3339(until)
        );
    }
    let (material, secret) = match (c.key_type, &args.public_key) {
        (KeyType::Hmac, Some(_)) => bail!("--public-key is for Ed25519 clients"),
        (KeyType::Hmac, None) => {
            let secret = SecretString::new(random_alphanumeric());
            (ClientKeyMaterial::Hmac(secret.clone()), Some(secret))
        }
        (KeyType::Ed25519, Some(path)) => {
            (ClientKeyMaterial::Ed25519(read_public_key(path)?), None)
        }
        (KeyType::Ed25519, None) => (
            c.open_material(&vault.master)
                .with_context(|| format!("opening client {name}'s public key"))?,
            None,
        ),
    };
    // The public keys that verify the bot's signatures before and after: one kept (not
    // given, or given again) leaves the bot's private key signing for the client. The old
    // one is unknown when the record does not verify (a new key may still be given).
    let public_keys = match &material {
        ClientKeyMaterial::Ed25519(new) => {
            let old = match c.open_material(&vault.master) {
                Ok(ClientKeyMaterial::Ed25519(old)) => Some(old),
                Ok(ClientKeyMaterial::Hmac(_)) | Err(_) => None,
            };
            Some((old, *new))
        }
        ClientKeyMaterial::Hmac(_) => None,
    };
    let new_fingerprint = public_keys.map(|(_, new)| public_key_fingerprint(&new));
    let api_key = random_alphanumeric();
    let grace_ms = u64::try_from(grace.as_millis()).context("--grace")?;
    // No key of the client works past its expiry: a grace that would is told, and
    // recorded, as ending then (found by review: told as months past it). The grace
    // asked for is kept, for an expiry extended later.
    let grace_asked_until = now.saturating_add(grace_ms);
    let grace_until = grace_asked_until.min(c.expires_ms.unwrap_or(u64::MAX));
    if grace_until < grace_asked_until {
        tell(format_args!(
            "keygate: warning: client {name} expires at {}, before the grace asked for \
             ends: the old key works until then, as the new one does",
            rfc3339(grace_until)
        ));
    }
    let mut detail = json!({
        "old_api_key": redact(&c.api_key),
        "new_api_key": redact(&api_key),
        "old_key_valid_until": rfc3339(grace_until),
    });
    match in_grace {
        Some((previous, until)) if args.keep_grace => {
            detail["grace_kept_of"] = json!(redact(previous));
            detail["grace_kept_until"] = json!(rfc3339(until));
        }
        Some((previous, _)) => detail["grace_ended_of"] = json!(redact(previous)),
        None => {}
    }
    if let (Some((old, _)), Some(new_fingerprint)) = (public_keys, &new_fingerprint) {
        detail["old_public_key_fingerprint"] = json!(old.as_ref().map(public_key_fingerprint));
        detail["new_public_key_fingerprint"] = json!(new_fingerprint);
    }
    let rotated = admin_event("client.rotate", name.as_str(), detail);
    vault
        .change(&[rotated], |s, master| {
            // The event names the key read above as the one kept for the grace period.
            unchanged_since_read(s, &c)?;
            if args.keep_grace {
                s.replace_client_key(&name, &api_key, &material, master)
            } else {
                s.rotate_client(&name, &api_key, &material, master, grace_asked_until)
            }
        })
        .with_context(|| format!("rotating client {name}"))?;
    // The key bots may still sign with, and until when it works.
    let old_valid_until = match in_grace {
        Some((previous, until)) if args.keep_grace => {
            tell(format_args!(
                "the key this replaces ({}) no longer works; the key before it ({}) works \
                 until {}, as the rotation before promised",
                redact(&c.api_key),
                redact(previous),
                rfc3339(until)
            ));
            until
        }
        Some((previous, _)) => {
            tell(format_args!(
                "the key before the last rotation ({}) no longer works",
                redact(previous)
            ));
            grace_until
        }
        None => grace_until,
    };
    if let (Some((Some(old), new)), Some(fingerprint)) = (public_keys, &new_fingerprint) {
        if old == new {
            // An API key names a client; it is no secret. Rotated because the bot's
            // private key may have leaked, this would change nothing that matters (found
            // by review: said only when --public-key was left out, not when it named the
            // key the client has).
            let why = if args.public_key.is_some() {
                "the key given is the one it has"
            } else {
                "no --public-key was given"
            };
            tell(format_args!(
                "keygate: warning: client {name} keeps its Ed25519 public key ({fingerprint}; \
                 {why}): only its API key changed, and the bot's private key still signs for \
                 it. If that key may have leaked, rotate again with --force --public-key FILE \
                 naming a new key pair"
            ));
        }
    }
    print_credentials(
        &Issued {
            name: &name,
            account: &c.account,
            exchange,
            api_key: &api_key,
            secret: secret.as_ref(),
            policy: &c.policy,
            key_type: c.key_type,
            public_key_fingerprint: new_fingerprint.as_deref(),
            expires_ms: c.expires_ms,
            gateway_url: &args.gateway_url,
            frozen: c.status == ClientStatus::Frozen,
        },
        args.json,
        Some(old_valid_until),
    )
    .with_context(|| {
        format!(
            "client {name} was rotated, but its new credentials could not be shown; \
             `keygate client rotate {name} --keep-grace` gives it others, and keeps the \
             old key working as long as this rotation promised"
        )
    })
}

/// Refuses a change made from `read` when the client's row is no longer that row: another
/// command changed it between the read and this transaction.
fn unchanged_since_read(store: &Store, read: &Client) -> Result<(), keygate_store::Error> {
    if store.client(&read.name)?.same_row_as(read) {
        return Ok(());
    }
    Err(keygate_store::Error::Conflict {
        kind: "client",
        name: read.name.to_string(),
        reason: "another command changed it meanwhile; run this again".into(),
    })
}

/// Credentials to print once.
struct Issued<'a> {
    name: &'a Name,
    account: &'a Name,
    /// The account's exchange: the gateway's path and ccxt's class are named after it.
    exchange: Exchange,
    api_key: &'a str,
    secret: Option<&'a SecretString>,
    policy: &'a Policy,
    key_type: KeyType,
    /// An Ed25519 client's [`public_key_fingerprint`].
    public_key_fingerprint: Option<&'a str>,
    expires_ms: Option<u64>,
    gateway_url: &'a str,
    /// Frozen (a rotation does not unfreeze): neither key works until `client unfreeze`.
    frozen: bool,
}

/// What `client issue --json` and `client rotate --json` print.
#[derive(serde::Serialize)]
struct CredentialsJson<'a> {
    name: &'a Name,
    account: &'a Name,
    api_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    secret: Option<&'a SecretString>,
    key_type: &'static str,
    /// An Ed25519 client's [`public_key_fingerprint`].
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key_fingerprint: Option<&'a str>,
    scopes: Vec<&'static str>,
    policy: &'a Policy,
    expires_at: Option<String>,
    gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_key_valid_until: Option<String>,
    /// `active`, or `frozen`: then neither key works until `client unfreeze`.
    status: &'static str,
}

/// The secret itself, written by the serializer to its output and nowhere else.
fn expose<S: serde::Serializer>(
    secret: &Option<&SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_str(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

fn print_credentials(
    c: &Issued<'_>,
    as_json: bool,
    old_valid_until: Option<u64>,
) -> anyhow::Result<()> {
    let exchange = c.exchange.as_str();
    let gateway = format!("{}/{exchange}", c.gateway_url);
    let neither_works = format!(
        "neither the new key nor the old one works until `keygate client unfreeze {}`",
        c.name
    );
    if as_json {
        if c.frozen {
            tell(format_args!("client {} is FROZEN: {neither_works}", c.name));
        }
        let credentials = CredentialsJson {
            name: c.name,
            account: c.account,
            api_key: c.api_key,
            secret: c.secret,
            key_type: c.key_type.as_str(),
            public_key_fingerprint: c.public_key_fingerprint,
            scopes: c.policy.scopes.iter().map(Scope::as_str).collect(),
            policy: c.policy,
            expires_at: c.expires_ms.map(rfc3339),
            gateway,
            previous_key_valid_until: old_valid_until.map(rfc3339),
            status: if c.frozen {
                ClientStatus::Frozen.as_str()
            } else {
                ClientStatus::Active.as_str()
            },
        };
        // Serialized straight into the output: no JSON value or string holds the secret.
        let mut out = SecretOutput::new();
        serde_json::to_writer_pretty(&mut out, &credentials).context("writing the credentials")?;
        writeln!(out)?;
        return out.finish();
    }
    let expires = c.expires_ms.map_or_else(|| "never".into(), rfc3339);
    let mut out = SecretOutput::new();
    match old_valid_until {
        // The grace runs meanwhile: once unfrozen, the old key works what is left of it.
        Some(until) if c.frozen => writeln!(
            out,
            "rotated client {}, which is FROZEN: {neither_works} (then the old key works \
             until {} at the latest)",
            c.name,
            rfc3339(until)
        )?,
        Some(until) if until <= now_ms() => writeln!(
            out,
            "rotated client {} (the old key no longer works)",
            c.name
        )?,
        Some(until) => writeln!(
            out,
            "rotated client {} (the old key works until {})",
            c.name,
            rfc3339(until)
        )?,
        None => writeln!(
            out,
            "issued client {} on account {} (expires {expires})",
            c.name, c.account
        )?,
    }
    writeln!(out, "scopes: {}", c.policy.scopes)?;
    writeln!(out)?;
    writeln!(out, "These credentials are shown once. Store them now.")?;
    writeln!(out, "  api key: {}", c.api_key)?;
    match (c.secret, c.public_key_fingerprint) {
        (Some(secret), _) => writeln!(out, "  secret:  {}", secret.expose_secret())?,
        (None, fingerprint) => {
            writeln!(
                out,
                "  secret:  none (Ed25519): keygate stores only the bot's public key; the bot \
                 signs with the matching private key"
            )?;
            if let Some(fingerprint) = fingerprint {
                writeln!(
                    out,
                    "  public key fingerprint: {fingerprint} (SHA-256 of its 32 bytes, first 16 \
                     hex digits)"
                )?;
                writeln!(
                    out,
                    "  check it against the bot's private key: `openssl pkey -in KEY.pem \
                     -pubout -outform DER | tail -c 32 | sha256sum` begins with it, or the \
                     file given was not the bot's public key"
                )?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "ccxt (Python), pointed at the gateway:")?;
    writeln!(out)?;
    writeln!(out, "    import ccxt")?;
    writeln!(out, "    GW = '{gateway}/'")?;
    // Written to the output, never formatted into a string that would outlive it unzeroized.
    match c.secret {
        Some(secret) => writeln!(
            out,
            "    exchange = ccxt.{exchange}({{'apiKey': '{}', 'secret': '{}'}})",
            c.api_key,
            secret.expose_secret()
        )?,
        None => writeln!(
            out,
            "    exchange = ccxt.{exchange}({{'apiKey': '{}', 'secret': \
             open('ed25519-private.pem').read()}})",
            c.api_key
        )?,
    }
    writeln!(
        out,
        "    exchange.urls['api'] = {{k: v.replace('https://', GW) if isinstance(v, str) else v"
    )?;
    writeln!(
        out,
        "                           for k, v in exchange.urls['api'].items()}}"
    )?;
    writeln!(out, "    print(exchange.fetch_balance())")?;
    // Found by review: a bot that retries ccxt's network errors retried refusals too.
    writeln!(
        out,
        "    # keygate refuses as Binance does (-2015), which ccxt raises as AuthenticationError,"
    )?;
    writeln!(
        out,
        "    # or as DDoSProtection (a NetworkError) once a signed spot call has succeeded:"
    )?;
    writeln!(
        out,
        "    # a refusal stands until the client's policy changes; do not retry it."
    )?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a review: the URL `serve` prints (with `/binance`) made a snippet whose every
    /// call went to `/binance/binance/…`, and anything at all was accepted.
    #[test]
    fn the_gateway_url_is_a_base_url_the_snippet_can_use() {
        for (given, kept) in [
            ("http://127.0.0.1:8080/binance", "http://127.0.0.1:8080"),
            ("https://gw.example:8443/", "https://gw.example:8443"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            (
                "https://gw.example/prefix/binance/",
                "https://gw.example/prefix",
            ),
        ] {
            assert_eq!(gateway_url(given).as_deref(), Ok(kept), "{given}");
        }
        for refused in [
            "",
            "not a url",
            "ftp://x",
            "http://",
            "http://x/'a",
            "http://x/?q",
        ] {
            assert!(gateway_url(refused).is_err(), "{refused:?} accepted");
        }
    }

    /// A regression test (from a review): `client update` made the new policy from a row
    /// read before its transaction, so an update another operator committed in between
    /// (narrowing the scopes during an incident, say) was undone without a word.
    #[test]
    fn a_change_made_from_a_row_changed_since_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("keygate.db")).unwrap();
        let master = keygate_vault::MasterKey::generate();
        let name: Name = "bot1".parse().unwrap();
        store
            .transaction(|s| {
                s.insert_account(
                    &keygate_store::NewAccount {
                        label: "main".parse().unwrap(),
                        exchange: keygate_core::Exchange::Binance,
                        upstream: None,
                        rotate_every_s: None,
                        api_key: SecretString::new("real-key".into()),
                        secret: SecretString::new("real-secret".into()),
                    },
                    &master,
                    1,
                )?;
                s.insert_client(
                    &NewClient {
                        name: name.clone(),
                        account: "main".parse().unwrap(),
                        api_key: "bot1-key".into(),
                        material: ClientKeyMaterial::Hmac(SecretString::new("s".into())),
                        policy: Policy::default(),
                        expires_ms: None,
                    },
                    &master,
                    1,
                )
            })
            .unwrap();
        let read = store.client(&name).unwrap();
        assert!(unchanged_since_read(&store, &read).is_ok());
        let narrowed = Policy {
            symbols: Some(["BTCUSDT".to_owned()].into()),
            ..Policy::default()
        };
        store
            .transaction(|s| s.set_client_policy(&name, &narrowed, &master))
            .unwrap();
        assert!(matches!(
            unchanged_since_read(&store, &read),
            Err(keygate_store::Error::Conflict { .. })
        ));
    }

    #[test]
    fn symbols_accept_exchange_ids_and_ccxt_form() {
        let n = |s| normalize_symbol(s).ok();
        assert_eq!(n("BTCUSDT").as_deref(), Some("BTCUSDT"));
        assert_eq!(n("ethusdt").as_deref(), Some("ETHUSDT"));
        assert_eq!(n("BTC/USDT").as_deref(), Some("BTCUSDT"));
        assert_eq!(n("spot:BTCUSDT").as_deref(), Some("BTCUSDT"));
        // A futures symbol is listed in its market, never as the spot pair of its id.
        assert_eq!(n("BTC/USDT:USDT").as_deref(), Some("usdm:BTCUSDT"));
        assert_eq!(n("usdm:btcusdt").as_deref(), Some("usdm:BTCUSDT"));
        assert_eq!(
            n("BTC/USDT:USDT-250328").as_deref(),
            Some("usdm:BTCUSDT_250328")
        );
        // COIN-M's private endpoints are all denied: a COIN-M symbol would allow nothing.
        for coinm in ["BTC/USD:BTC", "BTC/USD:BTC-250328", "coinm:BTCUSD_PERP"] {
            let refused = normalize_symbol(coinm).err().map(|e| e.to_string());
            assert!(
                refused.as_deref().is_some_and(|e| e.contains("COIN-M")),
                "{coinm}: {refused:?}"
            );
        }
        for bad in [
            "",
            "BTC USDT",
            "../x",
            "BTC-USDT",
            "BTC/USDT:ETH",
            "margin:BTCUSDT",
            "usdm:",
            "usdm:BTC/USDT",
            // From a review: ids no market has were stored as they were.
            "BTC/USDT:USDT-",
            "usdm:_",
            "BTCUSDT_1_2",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            // Found by review: `_` where no market has one (a spot id, a USD-M id
            // without an expiry after it).
            "BTC_USDT",
            "BTCUSDT_250328",
            "usdm:BTC_USDT",
            "usdm:BTCUSDT_PERP",
            "BTC/USDT:USDT-PERP",
            "usdm:BTCUSDT_2503",
            // Found by review: a ccxt pair with an empty half (a shell variable unset).
            "BTC/",
            "/USDT",
            "/",
            "BTC/:USDT",
        ] {
            assert!(normalize_symbol(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bare_addresses_become_host_networks() {
        assert_eq!(parse_net("10.0.0.1").ok(), "10.0.0.1/32".parse().ok());
        assert_eq!(parse_net("::1").ok(), "::1/128".parse().ok());
        assert_eq!(parse_net("10.0.0.0/8").ok(), "10.0.0.0/8".parse().ok());
        // Found by review: the IPv4-mapped form never matched, the gateway seeing an IPv4
        // peer as IPv4 on every socket.
        assert_eq!(
            parse_net("::ffff:10.0.0.5").ok(),
            "10.0.0.5/32".parse().ok()
        );
        assert_eq!(
            parse_net("::ffff:10.0.0.0/104").ok(),
            "10.0.0.0/8".parse().ok()
        );
        assert_eq!(parse_net("64:ff9b::/96").ok(), "64:ff9b::/96".parse().ok());
        // One address or its whole network: the operator says which.
        let refused = parse_net("10.1.2.3/8").unwrap_err().to_string();
        assert!(
            refused.contains("10.0.0.0/8") && refused.contains("10.1.2.3/32"),
            "{refused}"
        );
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn rates_and_notionals_must_be_positive() {
        assert_eq!(parse_rate("10/s").ok(), Some(10));
        assert_eq!(parse_rate("5").ok(), Some(5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("ten").is_err());
        assert!(parse_notional("--x", "0").is_err());
        assert!(parse_notional("--x", "-1").is_err());
        assert_eq!(parse_notional("--x", "1000.50").ok(), "1000.5".parse().ok());
        assert_eq!(parse_notional("--x", " 7 ").ok(), "7".parse().ok());
        // Found by review: exponents, signs and separators were taken, and an amount too
        // small to keep was refused as not greater than zero.
        for lenient in [
            "1e5", "1_000", "+5", "5.", ".5", "1,000", "NaN", "", "1.2.3", "٣",
        ] {
            let refused = parse_notional("--x", lenient).unwrap_err().to_string();
            assert!(refused.contains("is not an amount"), "{lenient}: {refused}");
        }
        for unkept in [
            "0.00000000000000000000000000001",
            "79228162514264337593543950336",
        ] {
            let refused = parse_notional("--x", unkept).unwrap_err().to_string();
            assert!(
                refused.contains("is too large, or has more decimal"),
                "{refused}"
            );
        }
        // Zeros ending a fraction lose nothing (found by review: refused past 28).
        assert_eq!(
            parse_notional("--x", "1000.00000000000000000000000000000").ok(),
            "1000".parse().ok()
        );
    }

    #[test]
    fn a_public_key_fingerprint_is_16_hex_digits_of_its_sha256() {
        // RFC 8032's test 1 public key.
        let key: [u8; 32] =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(public_key_fingerprint(&key), "21fe31dfa154a261");
    }

    #[test]
    fn generated_keys_are_64_alphanumerics() {
        let k = random_alphanumeric();
        assert_eq!(k.len(), 64);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
