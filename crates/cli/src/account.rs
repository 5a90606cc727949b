//! `keygate account`: real exchange keys, sealed in the vault.

use std::io::{IsTerminal, Write as _};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keygate_core::{ClientStatus, Exchange, Name};
use keygate_exchanges::Binance;
use keygate_store::{NewAccount, Store};
use keygate_vault::{redact, MasterKey, SecretString};
use serde_json::json;

use crate::audit_cmd::tell_if_put_back;
use crate::home::{admin_event, now_ms, parse_duration, read_stdin_line, Unlocked};
use crate::output::{
    escape_controls, print, print_after_change, print_json, print_table, rfc3339, span, tell,
};
use crate::remote::Exchanges;

/// `keygate account …`
#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Add a real exchange API key (read from standard input or a no-echo prompt).
    Add(AddArgs),
    /// List accounts: label, exchange, fingerprint, age, rotation due date.
    List(ListArgs),
    /// Replace an account's key and secret atomically; bound clients keep working.
    Rotate(RotateArgs),
    /// Delete an account (refused while clients not revoked are bound, unless --force).
    Remove(RemoveArgs),
}

/// `account add`
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The exchange (binance).
    #[arg(long)]
    pub exchange: String,
    /// A name for this key, used by `client issue --account`.
    #[arg(long)]
    pub label: String,
    /// Base URL replacing every exchange host (a testnet, the simulator). Public market
    /// data, which carries no key, goes there while every account of the exchange names
    /// the same upstream, and to the exchange's own hosts otherwise.
    #[arg(long)]
    pub upstream: Option<String>,
    /// How often the key should be rotated (`90d`).
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    /// Store the key without asking the exchange whether it takes it.
    #[arg(long)]
    pub no_check: bool,
}

/// `account list`
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `account rotate`
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The account's label.
    pub label: String,
    /// Swap in the new key without asking the exchange whether it takes it (bots fail
    /// from then on if it does not).
    #[arg(long)]
    pub no_check: bool,
    /// How often the new key should be rotated (`90d`; `none` for no period). Default:
    /// the account's period, unchanged.
    #[arg(long, value_name = "DURATION|none")]
    pub rotate_every: Option<String>,
}

/// `account remove`
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The account's label.
    pub label: String,
    /// Revoke every client bound to it, then delete it; revoked clients stay listed.
    #[arg(long)]
    pub force: bool,
}

/// Runs an account subcommand.
pub fn run(mut vault: Unlocked, cmd: &AccountCmd) -> anyhow::Result<()> {
    match cmd {
        AccountCmd::Add(a) => add(&mut vault, a),
        AccountCmd::List(a) => list(&vault, a),
        AccountCmd::Rotate(a) => rotate(&mut vault, a),
        AccountCmd::Remove(a) => remove(&mut vault, a),
    }
}

/// A rotation period in seconds: at least a day (a shorter one would show the key as due
/// for rotation almost always), at most a hundred years.
fn rotation_period(text: &str) -> anyhow::Result<u64> {
    const DAY_S: u64 = 86_400;
    let seconds = parse_duration(text)?.as_secs();
    if !(DAY_S..=100 * 365 * DAY_S).contains(&seconds) {
        bail!("{text:?} is not a rotation period between 1d and 36500d");
    }
    Ok(seconds)
}

fn add(vault: &mut Unlocked, args: &AddArgs) -> anyhow::Result<()> {
    let exchange: Exchange = args.exchange.parse()?;
    let label: Name = args.label.parse()?;
    let upstream = args.upstream.as_deref().map(parse_upstream).transpose()?;
    let rotate_every_s = args
        .rotate_every
        .as_deref()
        .map(rotation_period)
        .transpose()
        .context("--rotate-every")?;
    // Before the credentials are asked for (and sent to the exchange to be checked):
    // found by review, a label taken was told only once they had been.
    match vault.store.account(&label) {
        Ok(_) => bail!("account {label} already exists; nothing was read or changed"),
        Err(keygate_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e).context("reading accounts"),
    }
    let (api_key, secret) = read_credentials(exchange)?;
    if let Some(holder) =
        account_holding(&vault.store, &vault.master, &api_key).context("reading accounts")?
    {
        bail!(
            "account {holder} holds this API key already; nothing was changed (one account \
             per key: a second copy would go stale when the first is rotated)"
        );
    }
    refuse_replaced_key(&vault.store, &api_key)?;
    if !args.no_check {
        let exchanges = Exchanges::keeping_pauses_in(vault.store.path())?;
        check_with_exchange(&exchanges, exchange, upstream.as_deref(), &api_key, &secret)?;
    }
    let new = NewAccount {
        label: label.clone(),
        exchange,
        upstream: upstream.clone(),
        rotate_every_s,
        api_key,
        secret,
    };
    let now = now_ms();
    let fingerprint = redact(new.api_key.expose_secret());
    let added = admin_event(
        "account.add",
        label.as_str(),
        json!({
            "exchange": exchange.as_str(),
            "upstream": upstream,
            "rotate_every_s": rotate_every_s,
            "fingerprint": fingerprint,
        }),
    );
    vault
        .change(&[added], |s, master| {
            check_no_other_holds(s, master, &new.api_key, &label)?;
            check_not_replaced(s, &new.api_key)?;
            s.insert_account(&new, master, now)
        })
        .with_context(|| format!("adding account {label}"))?;
    tell_if_upstreams_differ(vault, exchange, &label, upstream.as_deref());
    // The fingerprint the store wrote (`redact` of the key), not read back: a read that
    // failed now would report a failure of a change that is made.
    print_after_change(|out| writeln!(out, "added account {label} ({exchange}, key {fingerprint})"))
}

/// Tells when account `label`, just added with `upstream`, makes the accounts of
/// `exchange` name different upstreams: public market data carries no key, so it follows
/// the accounts' upstream only while they all name one, and goes to the exchange itself
/// otherwise (found by review: a testnet bot's tickers went to the real exchange, and
/// without a network they failed, once a second account named another upstream).
fn tell_if_upstreams_differ(
    vault: &Unlocked,
    exchange: Exchange,
    label: &Name,
    upstream: Option<&str>,
) {
    let Ok(rows) = vault.store.account_rows() else {
        return;
    };
    let other = rows
        .into_iter()
        .flatten()
        .find(|a| a.exchange == exchange && a.label != *label && a.upstream.as_deref() != upstream);
    if let Some(other) = other {
        let shown = |u: Option<&str>| {
            u.map_or_else(|| "the exchange's own hosts".to_owned(), str::to_owned)
        };
        tell(format_args!(
            "keygate: warning: account {label} goes to {} and account {} to {}: public \
             market data (it carries no key) now goes to the exchange's own hosts, not to \
             either upstream",
            escape_controls(&shown(upstream)),
            other.label,
            escape_controls(&shown(other.upstream.as_deref()))
        ));
    }
}

fn list(vault: &Unlocked, args: &ListArgs) -> anyhow::Result<()> {
    let (mut accounts, mut unreadable) = (Vec::new(), 0);
    for row in vault.store.account_rows().context("reading accounts")? {
        match row {
            Ok(account) => accounts.push(account),
            // Told, not fatal, as `client list` does: the others still list.
            Err(e) => {
                unreadable += 1;
                tell(format_args!(
                    "keygate: an account does not read (its clients are refused): {}",
                    escape_controls(&e.to_string())
                ));
            }
        }
    }
    // Each row may verify on its own while the table does not: one was put back.
    if let Err(e @ keygate_store::Error::Unsealed { .. }) = vault.store.check_seal(&vault.master) {
        tell(format_args!("keygate: {e}"));
    }
    tell_if_put_back(vault, "accounts are listed");
    // Clients not revoked (an expired one counts: `client update --expires` makes it
    // work again): a revoked one stays listed under its account's label, and may be from
    // an account of that label removed before this one was added.
    let revoked: Vec<(Name, Name)> = vault
        .store
        .client_rows()
        .context("reading clients")?
        .into_iter()
        .flatten()
        .filter(|c| c.status == ClientStatus::Revoked)
        .map(|c| (c.account, c.name))
        .collect();
    let mut counts = Vec::with_capacity(accounts.len());
    for account in &accounts {
        let names = vault
            .store
            .client_names_bound_to(&account.label)
            .context("reading clients")?;
        counts.push(
            names
                .iter()
                .filter(|name| {
                    !revoked
                        .iter()
                        .any(|(a, n)| *a == account.label && n.as_str() == name.as_str())
                })
                .count(),
        );
    }
    let now = now_ms();
    let bound = |label: &Name| {
        accounts
            .iter()
            .position(|a| &a.label == label)
            .map_or(0, |i| counts[i])
    };
    if args.json {
        let items: Vec<_> = accounts
            .iter()
            .map(|a| {
                json!({
                    "label": a.label,
                    "exchange": a.exchange,
                    "fingerprint": a.fingerprint,
                    "created_at": rfc3339(a.created_ms),
                    "rotated_at": rfc3339(a.rotated_ms),
                    "age_s": now.saturating_sub(a.rotated_ms) / 1000,
                    "rotate_every_s": a.rotate_every_s,
                    "rotation_due_at": a.rotation_due_ms().map(rfc3339),
                    "rotation_overdue": a.rotation_due_ms().is_some_and(|d| d <= now),
                    "upstream": a.upstream,
                    "clients": bound(&a.label),
                })
            })
            .collect();
        return print_json(&items);
    }
    // Not "no accounts" when there are some that do not read (found by review).
    if accounts.is_empty() && unreadable == 0 {
        return print(|out| {
            writeln!(
                out,
                "no accounts; add one with `keygate account add --exchange binance --label main`"
            )
        });
    }
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let due = match a.rotation_due_ms() {
                Some(d) if d <= now => format!("{} (overdue)", rfc3339(d)),
                Some(d) => rfc3339(d),
                None => "-".into(),
            };
            vec![
                a.label.to_string(),
                a.exchange.to_string(),
                a.fingerprint.clone(),
                span(now.saturating_sub(a.rotated_ms)),
                due,
                a.upstream.clone().unwrap_or_else(|| "-".into()),
                bound(&a.label).to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "LABEL",
            "EXCHANGE",
            "KEY",
            "AGE",
            "ROTATION DUE",
            "UPSTREAM",
            "CLIENTS",
        ],
        &rows,
    )
}

fn rotate(vault: &mut Unlocked, args: &RotateArgs) -> anyhow::Result<()> {
    let label: Name = args.label.parse()?;
    // Some(None): no period from now on.
    let rotate_every_s = match args.rotate_every.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(rotation_period(text).context("--rotate-every")?)),
    };
    let before = vault
        .store
        .account(&label)
        .with_context(|| format!("looking up account {label}"))?;
    if !args.no_check {
        // The new key is about to be sent to the account's upstream: only to one keygate
        // set, as `doctor --exchange` sends a key, never to a host someone wrote into the
        // table. The seal holds the row as keygate last left it, and the old credentials
        // are bound to its upstream (they open only at the host they were sealed for).
        vault
            .store
            .check_seal_is_latest(&vault.master)
            .context("the new key was not sent to the exchange")?;
        before
            .open_api_key(&vault.master)
            .and_then(|_| before.open_secret(&vault.master))
            .with_context(|| {
                format!("account {label} does not open; the new key was not sent to its upstream")
            })?;
    }
    let (api_key, secret) = read_credentials(before.exchange)?;
    // The same key with another secret is a rotation: it mends a secret stored mistyped.
    let unchanged = before
        .open_api_key(&vault.master)
        .and_then(|held| Ok((held, before.open_secret(&vault.master)?)))
        .is_ok_and(|(held_key, held_secret)| {
            held_key.ct_eq(api_key.expose_secret()) && held_secret.ct_eq(secret.expose_secret())
        });
    if unchanged {
        bail!(
            "account {label} holds this key and secret already; nothing was changed (give the \
             new key and secret the exchange issued)"
        );
    }
    refuse_replaced_key(&vault.store, &api_key)?;
    match account_holding(&vault.store, &vault.master, &api_key).context("reading accounts")? {
        Some(holder) if holder != label => {
            bail!("account {holder} holds this API key; nothing was changed (one account per key)")
        }
        _ => {}
    }
    if !args.no_check {
        // The bots switch to the new key at once: one the exchange refuses stops them all.
        let exchanges = Exchanges::keeping_pauses_in(vault.store.path())?;
        check_with_exchange(
            &exchanges,
            before.exchange,
            before.upstream.as_deref(),
            &api_key,
            &secret,
        )?;
    }
    let now = now_ms();
    let after = redact(api_key.expose_secret());
    let mut detail = json!({
        "old_fingerprint": before.fingerprint,
        "new_fingerprint": after,
        "upstream": before.upstream,
    });
    if let Some(period) = rotate_every_s {
        detail["rotate_every_s"] = json!(period);
    }
    let rotated = admin_event("account.rotate", label.as_str(), detail);
    vault
        .change(&[rotated], |s, master| {
            // The event names the key read above as the one replaced.
            if !s.account(&label)?.same_row_as(&before) {
                return Err(keygate_store::Error::Conflict {
                    kind: "account",
                    name: label.to_string(),
                    reason: "another command changed it meanwhile; run this again".into(),
                });
            }
            check_no_other_holds(s, master, &api_key, &label)?;
            check_not_replaced(s, &api_key)?;
            s.replace_account_credentials(&label, &api_key, &secret, master, now)?;
            match rotate_every_s {
                Some(period) => s.set_account_rotation(&label, period, master),
                None => Ok(()),
            }
        })
        .with_context(|| format!("rotating account {label}"))?;
    print_after_change(|out| {
        writeln!(
            out,
            "rotated account {label}: key {} replaced by {after}; bound clients are unchanged",
            before.fingerprint
        )
    })
}

fn remove(vault: &mut Unlocked, args: &RemoveArgs) -> anyhow::Result<()> {
    let label: Name = args.label.parse()?;
    vault
        .store
        .account(&label)
        .with_context(|| format!("looking up account {label}"))?;
    let names = vault
        .store
        .client_names_bound_to(&label)
        .context("reading clients")?;
    // Revoked clients stay, revoked, after their account is gone; the others are revoked
    // first, and a row that does not read (so cannot be revoked) is deleted. A row whose
    // tag does not vouch for it is revoked too, whatever status it says (found by review:
    // one edited to say revoked needed no --force, stayed as it was, and put back it was
    // an active client of the next account under this label).
    let readable: Vec<(Name, ClientStatus, bool)> = vault
        .store
        .client_rows()
        .context("reading clients")?
        .into_iter()
        .flatten()
        .filter(|c| c.account == label)
        .map(|c| {
            let vouched = c.verify_record(&vault.master).is_ok();
            (c.name, c.status, vouched)
        })
        .collect();
    let unreadable: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !readable.iter().any(|(name, ..)| name.as_str() == *n))
        .collect();
    let to_revoke: Vec<(Name, ClientStatus)> = readable
        .into_iter()
        .filter(|(_, status, vouched)| *status != ClientStatus::Revoked || !vouched)
        .map(|(name, status, _)| (name, status))
        .collect();
    let not_revoked: Vec<&str> = to_revoke
        .iter()
        .map(|(name, _)| name.as_str())
        .chain(unreadable.iter().copied())
        .collect();
    if !not_revoked.is_empty() && !args.force {
        bail!(
            "account {label} has {} client(s) not revoked: {}; revoke them first or pass --force",
            not_revoked.len(),
            escape_controls(&not_revoked.join(", "))
        );
    }
    let revoked: Vec<&Name> = to_revoke.iter().map(|(name, _)| name).collect();
    let events: Vec<_> = revoked
        .iter()
        .map(|name| {
            admin_event(
                "client.revoke",
                name.as_str(),
                json!({ "reason": "account removed", "account": label.as_str() }),
            )
        })
        .chain([admin_event(
            "account.remove",
            label.as_str(),
            json!({ "revoked_clients": revoked, "deleted_clients": unreadable }),
        )])
        .collect();
    vault
        .change(&events, |s, master| {
            // What was decided above still holds only if no client was bound meanwhile.
            if s.client_names_bound_to(&label)? != names {
                return Err(keygate_store::Error::Conflict {
                    kind: "account",
                    name: label.to_string(),
                    reason: "its bound clients changed; run the command again".into(),
                });
            }
            for (name, status) in &to_revoke {
                s.set_client_status(name, *status, ClientStatus::Revoked, master)?;
            }
            s.delete_account(&label, &unreadable, master)
        })
        .with_context(|| format!("removing account {label}"))?;
    print_after_change(|out| {
        if to_revoke.is_empty() {
            writeln!(out, "removed account {label}")?;
        } else {
            writeln!(
                out,
                "revoked {} client(s) and removed account {label}; revoked clients stay listed",
                to_revoke.len()
            )?;
        }
        if !unreadable.is_empty() {
            writeln!(
                out,
                "deleted {} client row(s) that did not read: {}",
                unreadable.len(),
                escape_controls(&unreadable.join(", "))
            )?;
        }
        Ok(())
    })
}

/// Refuses `api_key` if a rotation replaced it: a key replaced may be the one that
/// leaked, and taking it back (as an account's next key, or another's) would undo the
/// rotation while the exchange still accepts it.
fn refuse_replaced_key(store: &Store, api_key: &SecretString) -> anyhow::Result<()> {
    let replaced = store
        .replaced_account_key(api_key.expose_secret())
        .context("reading the keys rotations replaced")?;
    if let Some((account, at_ms)) = replaced {
        bail!(
            "this API key was account {}'s until a rotation replaced it ({}); nothing was \
             changed: a replaced key may be the one that leaked (give a key the exchange \
             issued since, and delete this one there)",
            escape_controls(&account),
            keygate_core::rfc3339(at_ms)
        );
    }
    Ok(())
}

/// The account that holds `api_key`, if one does (compared in constant time; accounts that
/// do not open are passed over).
fn account_holding(
    store: &Store,
    master: &MasterKey,
    api_key: &SecretString,
) -> Result<Option<Name>, keygate_store::Error> {
    let accounts = store.account_rows()?;
    Ok(accounts.into_iter().flatten().find_map(|account| {
        let held = account.open_api_key(master).ok()?;
        held.ct_eq(api_key.expose_secret()).then_some(account.label)
    }))
}

/// [`refuse_replaced_key`] again inside the change's transaction: a rotation made by
/// another command while this one checked the key with the exchange may have replaced it.
fn check_not_replaced(store: &Store, api_key: &SecretString) -> Result<(), keygate_store::Error> {
    match store.replaced_account_key(api_key.expose_secret())? {
        Some((account, _)) => Err(keygate_store::Error::Conflict {
            kind: "account",
            name: account,
            reason: "a rotation replaced this API key meanwhile (a replaced key may be the one \
                     that leaked)"
                .into(),
        }),
        None => Ok(()),
    }
}

/// [`account_holding`] again inside the change's transaction, for an account other than
/// `label`: two commands given the same key at once both passed the first look.
fn check_no_other_holds(
    store: &Store,
    master: &MasterKey,
    api_key: &SecretString,
    label: &Name,
) -> Result<(), keygate_store::Error> {
    match account_holding(store, master, api_key)? {
        Some(holder) if &holder != label => Err(keygate_store::Error::Conflict {
            kind: "account",
            name: holder.to_string(),
            reason: "it now holds this API key (one account per key)".into(),
        }),
        _ => Ok(()),
    }
}

/// Asks `exchange` (or `upstream`, which replaces its hosts) whether it takes the key:
/// a mistyped key, a swapped key and secret, or a key deleted at the exchange is refused
/// here rather than by the exchange on every bot request after.
fn check_with_exchange(
    exchanges: &Exchanges,
    exchange: Exchange,
    upstream: Option<&str>,
    api_key: &SecretString,
    secret: &SecretString,
) -> anyhow::Result<()> {
    let checked = match exchange {
        Exchange::Binance => exchanges.check_key(&Binance, upstream, api_key, secret),
    };
    checked.map_err(|e| {
        let reason = escape_controls(&e.reason);
        if e.may_pass {
            // Not reached, no answer, or busy: nothing is known of the key yet.
            anyhow::anyhow!(
                "the exchange could not be asked whether it takes the key: {reason}; nothing \
                 was changed (check --upstream and the network and try again, or pass \
                 --no-check to store it without asking)"
            )
        } else {
            anyhow::anyhow!(
                "the exchange did not take the key: {reason}; nothing was changed (check the \
                 key and secret, or pass --no-check to store it without asking)"
            )
        }
    })
}

/// Reads an API key and secret: two lines of standard input when it is not a terminal,
/// otherwise two no-echo prompts. Never from argv.
fn read_credentials(exchange: Exchange) -> anyhow::Result<(SecretString, SecretString)> {
    let (key, secret) = if std::io::stdin().is_terminal() {
        let key = crate::home::prompt_secret(&format!("{exchange} API key: "), "API key")?;
        let secret = crate::home::prompt_secret(&format!("{exchange} API secret: "), "API secret")?;
        (key, secret)
    } else {
        (read_stdin_line("API key")?, read_stdin_line("API secret")?)
    };
    check_credential("API key", &key)?;
    check_credential("API secret", &secret)?;
    Ok((key, secret))
}

/// Non-empty printable ASCII without spaces, as exchanges issue keys; the message never
/// quotes the value.
fn check_credential(what: &str, value: &SecretString) -> anyhow::Result<()> {
    let v = value.expose_secret();
    if v.is_empty() {
        bail!("the {what} is empty");
    }
    if v.starts_with('\u{feff}') {
        bail!(
            "the {what} begins with a byte-order mark (a file saved by some Windows \
             editors); save it without one"
        );
    }
    if v.chars().any(char::is_whitespace) {
        bail!("the {what} contains whitespace");
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the {what} contains a character that is not printable ASCII");
    }
    Ok(())
}

fn parse_upstream(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).context("--upstream is not a valid URL")?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("--upstream must be an http:// or https:// URL with a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("--upstream must not carry credentials");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        bail!("--upstream is a base URL: keygate adds each request's path and query to it");
    }
    // The gateway sends real-key signatures in the clear only over loopback.
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http" && !loopback {
        bail!("--upstream over plain http:// is allowed to a loopback host only; use https://");
    }
    // Stored as parsed (scheme and host in lower case, `127.1` as `127.0.0.1`, a default
    // port left out), which is what the gateway reads: as typed, a URL this parser takes
    // could be one the gateway refuses, and every request would fail as unreachable.
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a review: a key saved with a byte-order mark, or with control characters, was
    /// stored as it was, and listed with an invisible character; Binance then answered
    /// -2014 (bad key format), which says nothing of why.
    #[test]
    fn a_credential_is_printable_ascii_without_a_byte_order_mark() {
        let check = |value: &str| check_credential("API key", &SecretString::new(value.into()));
        assert!(check("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A").is_ok());
        let bom = check("\u{feff}AKEY").unwrap_err().to_string();
        assert!(bom.contains("byte-order mark"), "{bom}");
        for bad in ["", "A KEY", "A\u{1b}[31mKEY", "KEY\u{1}", "KÉY"] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// From a review: the URL was checked by one parser and stored as typed, for the
    /// gateway to read with another: `HTTP://127.0.0.1:9000` or `http://127.1:9000` were
    /// stored, and every request through the account then failed as unreachable.
    #[test]
    fn an_upstream_is_stored_as_the_gateway_reads_it() {
        for (typed, stored) in [
            ("HTTP://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://127.1:9000/", "http://127.0.0.1:9000"),
            (
                "https://Testnet.Binance.Vision:443",
                "https://testnet.binance.vision",
            ),
            (
                "https://proxy.example/binance/",
                "https://proxy.example/binance",
            ),
        ] {
            assert_eq!(parse_upstream(typed).unwrap(), stored, "{typed}");
        }
        for refused in ["https://x.example/?a=1", "https://x.example/#f"] {
            assert!(parse_upstream(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn credentials_with_whitespace_or_empty_are_refused() {
        assert!(check_credential("k", &SecretString::new("abc".into())).is_ok());
        for bad in ["", "a b", "a\tb"] {
            assert!(check_credential("k", &SecretString::new(bad.into())).is_err());
        }
    }

    #[test]
    fn upstream_must_be_http_with_a_host() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:9000/").ok().as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(parse_upstream("http://[::1]:9000").is_ok());
        assert!(parse_upstream("http://localhost:9000").is_ok());
        assert!(parse_upstream("https://testnet.binance.vision").is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "http://user:pw@host",
            "http://testnet.binance.vision",
            "http://10.0.0.1:9000",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }
}
