//! The gateway's in-memory view of accounts and clients, reloaded when the store changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use ipnet::IpNet;
use keygate_audit::{AuditKey, MarkFrom, Marking, ReadSoFar};
use keygate_core::{ClientStatus, Exchange, Name, Policy};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};
use keygate_store::{Account, Client, ClientKeyMaterial, Store};
use keygate_vault::{MasterKey, SecretBytes, SecretString};

/// How often the store's generation is polled; a freeze or revoke takes effect within this.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(200);

/// How often the registry is loaded again though the generation is the one loaded. The
/// counter is a row that anyone who may write the file can put back, to hide a revoke,
/// a freeze or a panic from a running gateway: one hidden so still reaches it within this.
pub const FULL_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How far the reloader may fall behind before every client is refused: when no poll of
/// the store that began within this has finished (the database busy, a disk that hangs,
/// a long read of the audit log), a freeze or revoke committed meanwhile would not be
/// seen, so nothing is served on the view it left until one does. Generous, so that a
/// slow full reload on a loaded machine is not taken for a stall.
pub const RELOAD_STALL_LIMIT: Duration = Duration::from_secs(10);

/// What verifies one client key.
pub enum Verifier {
    /// HMAC secret.
    Hmac(SecretBytes),
    /// Ed25519 public key.
    Ed25519(VerifyingKey),
}

/// One client key as the gateway uses it. A client in its rotation grace window has two.
pub struct ClientEntry {
    /// The client's name.
    pub name: Name,
    /// Its account.
    pub account: Name,
    /// Its status.
    pub status: ClientStatus,
    /// When the client expires.
    pub expires_ms: Option<u64>,
    /// When this particular key stops working (the end of a rotation grace window).
    pub key_valid_until_ms: Option<u64>,
    /// What it may do.
    pub policy: Policy,
    /// What verifies its signatures (shared by the copies a stop file makes of it).
    pub verifier: Arc<Verifier>,
    /// How many times this gateway has seen the client stopped (frozen, revoked, or with
    /// every client by the stop file of `keygate panic`) since it started: a request
    /// decided before a stop is not sent after it, even once the client is active again
    /// (found by review: a freeze lifted while an order waited for its price let the
    /// order go). A stop made and lifted between two polls ([`RELOAD_INTERVAL`]) is not
    /// seen.
    pub stops: u32,
}

/// One real key, opened.
pub struct AccountEntry {
    /// Its exchange.
    pub exchange: Exchange,
    /// The real API key.
    pub api_key: SecretString,
    /// The real secret.
    pub secret: SecretString,
    /// The base URL replacing every exchange host.
    pub upstream: Option<String>,
}

/// Why tables are refused whose seal an administrative event in the log follows.
const PREDATE: &str = "were put back, seal and all, as they were before a later \
     administrative change in the audit log";

/// A consistent snapshot of every client and account.
#[derive(Default)]
pub struct Registry {
    clients: HashMap<String, Arc<ClientEntry>>,
    accounts: HashMap<Name, Arc<AccountEntry>>,
    /// Keys a rotation took out of use for good, by hash, with their client.
    retired: HashMap<[u8; 32], Name>,
    public_upstream: HashMap<Exchange, String>,
    /// The store's generation in the snapshot this was loaded from; `None` when it was
    /// not loaded from a store.
    generation: Option<u64>,
    /// Each row opened by this load, as it was read, with what it opened to: the next
    /// load opens again only the rows that differ from these by a byte.
    opened: Opened,
    /// How many times this gateway refused every client at once before this view (a
    /// reload that failed or stalled, the stop file of `keygate panic`): a request
    /// decided before one is not sent after it, though the clients' own stops
    /// ([`ClientEntry::stops`]) are counted again from nothing after a failed reload.
    every_client_stopped: u64,
    /// What this load left out and why, one sentence each (no secret in them): a row
    /// that does not read or verify, a key two clients hold. Logged as found; the
    /// reloader raises an alert for each the load before did not have.
    refused: Vec<String>,
    /// Every network some client not revoked may call from (its `--allow-ip`), once
    /// each: see [`Registry::is_client_source`].
    client_networks: Vec<IpNet>,
}

/// Rows a load opened, kept so that the next load need not decrypt them again. A row
/// is reused only where every column, sealed secrets and tag included, is the one
/// verified before with the same master key: a change made behind keygate's back is a
/// changed row, opened and verified afresh.
#[derive(Default)]
struct Opened {
    accounts: HashMap<Name, (Account, Arc<AccountEntry>)>,
    clients: HashMap<Name, (Client, ClientKeys)>,
}

/// A client's keys by API key: its current one and, in a rotation's grace window, its
/// previous one.
type ClientKeys = Vec<(String, Arc<ClientEntry>)>;

impl Registry {
    /// Leaves something out of this load because `why`: logged, and kept for an alert.
    fn refuse(&mut self, why: String) {
        leave_out(&mut self.refused, why);
    }

    /// What this load left out and why (see [`Registry`]'s `refused`).
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    /// Loads and opens everything in the store, from one snapshot of it. A record that
    /// fails to open is left out (and logged): its client is refused rather than
    /// half-trusted. Client and account tables that do not match their seal (a client put
    /// back as it was before a revocation, an account as it was before a rotation), or
    /// whose seal is older than the last administrative event in the audit log (the
    /// tables put back whole), are an error: no client can then be trusted.
    pub fn load(store: &Store, master: &MasterKey) -> Result<Registry, keygate_store::Error> {
        Registry::load_after(
            store,
            master,
            &mut ReadSoFar::default(),
            &Registry::default(),
        )
    }

    /// [`Registry::load`] for a reader that loads again and again: the audit events after
    /// the tables' seal are read from where the last load left off (`so_far`), not from the
    /// last mark in the database ([`keygate_audit::admin_change_after_read`]), and the rows
    /// that are byte for byte those `previous` opened are not decrypted again.
    fn load_after(
        store: &Store,
        master: &MasterKey,
        so_far: &mut ReadSoFar,
        previous: &Registry,
    ) -> Result<Registry, keygate_store::Error> {
        store.read_snapshot(|store| {
            // As `Store::check_seal_is_latest`, but reading the events after the seal only
            // where they verify: an administrative event edited or removed behind
            // keygate's back cannot hide that the tables predate it.
            let sealed = store.check_seal(master)?;
            let key = AuditKey::of_vault(master);
            if keygate_audit::admin_change_after_seal_read(store, &key, sealed, so_far)? {
                return Err(keygate_store::Error::Unsealed { reason: PREDATE });
            }
            let generation = store.generation()?;
            Ok(Registry {
                generation: Some(generation),
                every_client_stopped: previous.every_client_stopped,
                ..Registry::load_snapshot(store, master, previous)?
            })
        })
    }

    fn load_snapshot(
        store: &Store,
        master: &MasterKey,
        previous_registry: &Registry,
    ) -> Result<Registry, keygate_store::Error> {
        let previous = &previous_registry.opened;
        let mut registry = Registry::default();
        for account in store.account_rows()? {
            let account = match account {
                Ok(account) => account,
                Err(e) => {
                    registry.refuse(format!(
                        "an account does not read ({e}); its clients are refused"
                    ));
                    continue;
                }
            };
            let reused = previous
                .accounts
                .get(&account.label)
                .filter(|(row, _)| row.same_row_as(&account))
                .map(|(_, entry)| Arc::clone(entry));
            let entry = match reused {
                Some(entry) => entry,
                None => match open_account(&account, master) {
                    Ok(entry) => Arc::new(entry),
                    Err(e) => {
                        registry.refuse(format!(
                            "account {} does not open ({e}); its clients are refused",
                            account.label
                        ));
                        continue;
                    }
                },
            };
            registry
                .accounts
                .insert(account.label.clone(), Arc::clone(&entry));
            registry
                .opened
                .accounts
                .insert(account.label.clone(), (account, entry));
        }
        // Public market data carries no key, so no account says where it goes: when every
        // account of an exchange points at the same upstream (a testnet, the simulator),
        // public calls follow them; otherwise they go to the exchange itself.
        for exchange in Exchange::ALL {
            let mut upstreams = registry
                .accounts
                .values()
                .filter(|a| a.exchange == *exchange)
                .map(|a| a.upstream.as_deref());
            if let Some(Some(first)) = upstreams.next() {
                if upstreams.all(|u| u == Some(first)) {
                    registry.public_upstream.insert(*exchange, first.to_owned());
                }
            }
        }
        // An API key two rows claim (a previous key copied into another row by hand) is
        // nobody's: which row wins must not depend on the order they are read in.
        let mut claimed_twice = std::collections::HashSet::new();
        // So is an Ed25519 public key two clients hold (issued before keygate refused it):
        // the signature does not cover the API key, so the bot holding the private key
        // could sign as either, and freezing one would not stop it.
        let mut public_keys: HashMap<[u8; 32], Vec<(Name, String)>> = HashMap::new();
        let now = crate::now_ms();
        for client in store.client_rows()? {
            let client = match client {
                Ok(client) => client,
                Err(e) => {
                    registry.refuse(format!("a client does not read ({e}); it is refused"));
                    continue;
                }
            };
            let reused = previous
                .clients
                .get(&client.name)
                .filter(|(row, _)| row.same_row_as(&client))
                .map(|(_, entries)| entries.clone());
            let opened = reused.or_else(|| {
                let mut entries = open_client(&client, master, &mut registry.refused)?;
                for (api_key, entry) in &mut entries {
                    if let Some(entry) = Arc::get_mut(entry) {
                        entry.stops = previous_registry.stops_before(api_key, entry.status);
                    }
                }
                Some(entries)
            });
            let Some(entries) = opened else {
                continue;
            };
            for (api_key, entry) in &entries {
                // Only keys that still work: a previous key whose grace is over is kept
                // in its row (until the next rotation), but opens nothing (found by
                // review: a client rotated off the shared key stayed refused for it).
                let works = entry.status != ClientStatus::Revoked
                    && entry.key_valid_until_ms.is_none_or(|until| until > now);
                if let (Verifier::Ed25519(key), true) = (&*entry.verifier, works) {
                    public_keys
                        .entry(key.to_bytes())
                        .or_default()
                        .push((entry.name.clone(), api_key.clone()));
                }
                if registry.clients.contains_key(api_key) {
                    registry.refuse(format!(
                        "an API key of client {} belongs to another client too; both refused",
                        client.name
                    ));
                    claimed_twice.insert(api_key.clone());
                }
                registry.clients.insert(api_key.clone(), Arc::clone(entry));
            }
            registry
                .opened
                .clients
                .insert(client.name.clone(), (client, entries));
        }
        for holders in public_keys.values() {
            if holders.iter().all(|(name, _)| *name == holders[0].0) {
                continue;
            }
            let mut names: Vec<&str> = holders.iter().map(|(name, _)| name.as_str()).collect();
            names.dedup();
            registry.refuse(format!(
                "clients {} hold one Ed25519 public key; all refused (revoke all but one \
                 of them, or rotate the others with --force --public-key naming a key pair \
                 of their own: the shared key, kept for the rotation's grace, counts until \
                 that grace is over)",
                names.join(", ")
            ));
            claimed_twice.extend(holders.iter().map(|(_, api_key)| api_key.clone()));
        }
        for api_key in claimed_twice {
            registry.clients.remove(&api_key);
        }
        let mut networks: Vec<IpNet> = registry
            .clients
            .values()
            .filter(|entry| entry.status != ClientStatus::Revoked)
            .flat_map(|entry| entry.policy.allow_ips.iter().copied())
            .collect();
        networks.sort_unstable();
        networks.dedup();
        registry.client_networks = networks;
        // They open nothing and only name whose a stale key was: a table that does not
        // read (a database put back from before it) must not refuse every client.
        registry.retired = match store.retired_keys() {
            Ok(retired) => retired.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "the retired client keys do not read; a retired key's use is not told apart");
                HashMap::new()
            }
        };
        Ok(registry)
    }

    /// Whether some client not revoked may call from `source`: a connection from any
    /// other address can only ask for public data (or be refused), and the acceptor keeps
    /// such addresses together to a share of the connections, so that they cannot take
    /// the slots the bots reconnect into.
    pub fn is_client_source(&self, source: IpAddr) -> bool {
        self.client_networks
            .iter()
            .any(|network| network.contains(&source))
    }

    /// The stops of the client that held `api_key` in this registry, and one more if it
    /// was active here and is `now` stopped (see [`ClientEntry::stops`]).
    fn stops_before(&self, api_key: &str, now: ClientStatus) -> u32 {
        self.clients.get(api_key).map_or(0, |before| {
            let stopped_since =
                before.status == ClientStatus::Active && now != ClientStatus::Active;
            before.stops.saturating_add(u32::from(stopped_since))
        })
    }

    /// How many times every client was refused at once before this view (see
    /// `every_client_stopped`).
    pub fn every_client_stopped(&self) -> u64 {
        self.every_client_stopped
    }

    /// The client key `api_key`, compared by hash-map lookup (the key is an identifier;
    /// the secret behind it is compared in constant time).
    pub fn client(&self, api_key: &str) -> Option<&Arc<ClientEntry>> {
        self.clients.get(api_key)
    }

    /// The client whose key `api_key` was until a rotation retired it for good, when it
    /// is such a key. Nothing verifies a request signed with it any more (its secret is
    /// gone), so this says only whose key someone still holds, not that they sent it.
    pub fn retired_key_holder(&self, api_key: &str) -> Option<&Name> {
        if self.retired.is_empty() {
            return None;
        }
        self.retired.get(&keygate_store::retired_key_hash(api_key))
    }

    /// Where public market data of `exchange` goes, when the accounts agree on an upstream.
    pub fn public_upstream(&self, exchange: Exchange) -> Option<&str> {
        self.public_upstream.get(&exchange).map(String::as_str)
    }

    /// The account called `label`.
    pub fn account(&self, label: &Name) -> Option<&Arc<AccountEntry>> {
        self.accounts.get(label)
    }

    /// This registry with every active client frozen, loaded from no store: the next
    /// load opens every row again.
    fn with_every_client_frozen(&self) -> Registry {
        let freeze = |entry: &Arc<ClientEntry>| match entry.status {
            ClientStatus::Active => Arc::new(ClientEntry {
                name: entry.name.clone(),
                account: entry.account.clone(),
                status: ClientStatus::Frozen,
                expires_ms: entry.expires_ms,
                key_valid_until_ms: entry.key_valid_until_ms,
                policy: entry.policy.clone(),
                verifier: Arc::clone(&entry.verifier),
                stops: entry.stops.saturating_add(1),
            }),
            ClientStatus::Frozen | ClientStatus::Revoked => Arc::clone(entry),
        };
        Registry {
            clients: self
                .clients
                .iter()
                .map(|(api_key, entry)| (api_key.clone(), freeze(entry)))
                .collect(),
            accounts: self.accounts.clone(),
            retired: self.retired.clone(),
            public_upstream: self.public_upstream.clone(),
            generation: None,
            every_client_stopped: self.every_client_stopped.saturating_add(1),
            opened: Opened::default(),
            refused: self.refused.clone(),
            client_networks: self.client_networks.clone(),
        }
    }
}

/// The current registry, swapped whole on reload.
pub struct Live {
    /// The registry and why it refuses every client, changed together under one lock (found
    /// by review: kept apart, a refusal and a reload made at once could leave a served
    /// registry marked as failed, which the stall watch then left alone).
    view: RwLock<View>,
    /// Set when the marker found events after the seal that do not verify: the next
    /// reload reads every event after the seal again, not only what came since its last.
    read_from_seal: AtomicBool,
    /// What `confirmed_ms` counts from.
    created: Instant,
    /// When the last poll of the store that has finished began, in milliseconds after
    /// `created`; 0 until one has: the view holds every change committed before then.
    confirmed_ms: AtomicU64,
}

/// What [`Live`] serves.
struct View {
    registry: Arc<Registry>,
    /// The last registry loaded, which a stop file freezes whole even while every client
    /// is refused for a failed reload or a stall (found by review: the empty registry was
    /// frozen, and requests under a panic were recorded as of unknown keys).
    loaded: Arc<Registry>,
    /// Why every client is refused: a failed reload, a stall, or the stop file.
    failure: Option<String>,
    /// Set while every client is refused as frozen for the stop file of `keygate panic`
    /// ([`Live::stop_all`]) rather than for a failed reload.
    stopped: bool,
    /// Set from a failed reload until one succeeds, whatever stop came between: the
    /// failures of one run are alerted once.
    reload_failing: bool,
}

impl Live {
    /// A live view starting at `registry`.
    pub fn new(registry: Registry) -> Live {
        let registry = Arc::new(registry);
        Live {
            view: RwLock::new(View {
                loaded: Arc::clone(&registry),
                registry,
                failure: None,
                stopped: false,
                reload_failing: false,
            }),
            read_from_seal: AtomicBool::new(false),
            created: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a poll of the store that began at `began` has finished: every change
    /// committed before `began` is in the view, or every client is refused.
    fn confirm(&self, began: Instant) {
        let ms = began.saturating_duration_since(self.created).as_millis();
        self.confirmed_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long ago the last poll of the store that has finished began (since this view
    /// was made, before any has): a change committed since may not be in the view yet.
    pub fn view_age(&self) -> Duration {
        let confirmed = Duration::from_millis(self.confirmed_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(confirmed)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Registry> {
        Arc::clone(&self.read().registry)
    }

    /// Replaces the snapshot with `registry`, loaded by a poll that began at `began`.
    /// Counts every refusal of all clients made since it began (its own count came from
    /// the view before them): a request decided before one is not sent after it.
    pub fn replace(&self, mut registry: Registry, began: Instant) {
        let mut view = self.write();
        registry.every_client_stopped = registry
            .every_client_stopped
            .max(view.registry.every_client_stopped);
        let registry = Arc::new(registry);
        view.loaded = Arc::clone(&registry);
        view.registry = registry;
        view.failure = None;
        view.stopped = false;
        view.reload_failing = false;
        // Under the lock: the stall watch never finds this view fresh and its poll old.
        self.confirm(began);
    }

    /// Refuses every client, because a reload failed for `reason`. Whether it is the first
    /// failure since the last reload that succeeded.
    pub fn refuse_all(&self, reason: String) -> bool {
        let mut view = self.write();
        Live::refuse_in(&mut view, reason);
        !std::mem::replace(&mut view.reload_failing, true)
    }

    fn refuse_in(view: &mut View, reason: String) {
        view.registry = Arc::new(Registry {
            every_client_stopped: view.registry.every_client_stopped.saturating_add(1),
            ..Registry::default()
        });
        view.failure = Some(reason);
        view.stopped = false;
    }

    /// Refuses every client when no poll that began within `limit` has finished and
    /// nothing else refuses them already, for the reason `why` gives from the view's age;
    /// the reason when it did. Checked and done under one lock, so that a poll that
    /// finishes meanwhile is never refused.
    fn refuse_if_stale(
        &self,
        limit: Duration,
        why: impl FnOnce(Duration) -> String,
    ) -> Option<String> {
        let mut view = self.write();
        let age = self.view_age();
        if age <= limit || view.failure.is_some() {
            return None;
        }
        let reason = why(age);
        Live::refuse_in(&mut view, reason.clone());
        Some(reason)
    }

    /// Refuses every client as frozen, for `reason`: the stop file of `keygate panic` is
    /// there. The clients are still known (found by review: under the stop file a leaked
    /// key's requests were recorded as of an unknown key, so neither `incident report
    /// --client` nor the dead-key alert saw them), so each request is told as its
    /// client's, and refused as a frozen client's is.
    pub fn stop_all(&self, reason: String) {
        let mut view = self.write();
        let mut frozen = view.loaded.with_every_client_frozen();
        frozen.every_client_stopped = frozen
            .every_client_stopped
            .max(view.registry.every_client_stopped.saturating_add(1));
        view.registry = Arc::new(frozen);
        view.failure = Some(reason);
        view.stopped = true;
    }

    /// Whether every client is refused for the stop file of `keygate panic`
    /// ([`Live::stop_all`]), not for a failed reload.
    pub fn is_stopped(&self) -> bool {
        self.read().stopped
    }

    /// The store's generation the current snapshot was loaded at; `None` when it was not
    /// loaded from a store, or every client is refused for a failed reload. A test hook:
    /// a test that edits the store waits for this, not for a fixed time.
    pub fn generation(&self) -> Option<u64> {
        self.snapshot().generation
    }

    /// Why every client is refused (a failed reload, a stall, the stop file), while none
    /// has succeeded since.
    pub fn failure(&self) -> Option<String> {
        self.read().failure.clone()
    }
}

/// How often [`spawn_admin_free_marker`] marks the audit log.
pub const MARK_INTERVAL: Duration = Duration::from_secs(60);

/// How often [`spawn_admin_free_marker`] reads every event after the seal again.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(3600);

/// Marks, every [`MARK_INTERVAL`], how far the audit events after the client and account
/// tables' seal verify and hold no administrative change
/// ([`keygate_audit::mark_admin_free`]), until `live` is dropped by everyone else. Every
/// check of the seal (this gateway's reloads, each change made with the command line)
/// then reads only the events after the mark, instead of every request since the last
/// change: after a long run, millions, read while a change holds the store's write lock.
///
/// Once at start and every [`REREAD_INTERVAL`], it reads every event after the seal
/// again ([`MarkFrom::Seal`]): an event before the mark edited since it was made is then
/// found, the mark removed, and every check reads from the seal again and refuses the
/// tables, as it would have without a mark. On a thread of its own, with a connection of
/// its own, so that a long read never delays a reload past [`RELOAD_INTERVAL`]. A mark
/// that cannot be made is logged; the checks then read from the seal, as they would
/// without one, and report what they find. Events that do not verify also raise a
/// critical `log_unreadable` alert through `alerter`, once until a reading verifies
/// again: no request reads old events, so nothing else would say the log was edited.
pub fn spawn_admin_free_marker(
    store: Store,
    master: Arc<MasterKey>,
    live: &Arc<Live>,
    alerter: Option<Alerter>,
) -> std::io::Result<()> {
    let live = Arc::downgrade(live);
    let key = AuditKey::of_vault(&master);
    std::thread::Builder::new()
        .name("keygate-mark".into())
        .spawn(move || {
            let mut marked_at = None::<Instant>;
            let mut reread_at = None::<Instant>;
            let mut told_of_edit = false;
            while live.strong_count() > 0 {
                if marked_at.is_none_or(|at| at.elapsed() >= MARK_INTERVAL) {
                    marked_at = Some(Instant::now());
                    let start = if reread_at.is_none_or(|at| at.elapsed() >= REREAD_INTERVAL) {
                        reread_at = marked_at;
                        MarkFrom::Seal
                    } else {
                        MarkFrom::LastMark
                    };
                    match mark_once(&store, &master, &key, start) {
                        Ok(()) => told_of_edit = false,
                        Err(e @ keygate_audit::Error::Tampered { .. }) => {
                            // The reloader's own mark would otherwise keep it from
                            // reading the edited event, as the database's did.
                            if let Some(live) = live.upgrade() {
                                live.read_from_seal.store(true, Ordering::Relaxed);
                            }
                            if let (false, Some(alerter)) = (told_of_edit, &alerter) {
                                told_of_edit = true;
                                alerter.raise(Alert::outside_log(
                                    Severity::Critical,
                                    AlertRule::LogUnreadable,
                                    format!(
                                        "the audit log was edited behind keygate's back ({e}); \
                                         `keygate audit verify` names where"
                                    ),
                                ));
                            }
                        }
                        Err(_) => {}
                    }
                }
                std::thread::sleep(RELOAD_INTERVAL);
            }
        })?;
    Ok(())
}

/// One marking from `start`, logged.
fn mark_once(
    store: &Store,
    master: &MasterKey,
    key: &AuditKey,
    start: MarkFrom,
) -> Result<(), keygate_audit::Error> {
    let marked = store
        .read_snapshot(|store| store.check_seal(master))
        .map_err(keygate_audit::Error::from)
        .and_then(|sealed| keygate_audit::mark_admin_free(store, key, sealed, start));
    match &marked {
        Ok(Marking::Marked { through }) => {
            tracing::debug!(through, "marked the audit log after the seal")
        }
        Ok(Marking::NothingNew) => {}
        Ok(Marking::AdminChange) => {
            tracing::debug!("an administrative change follows the seal; nothing marked")
        }
        Err(e) => tracing::warn!(error = %e, "cannot mark the audit log after the seal"),
    }
    marked.map(|_| ())
}

/// The name of the stop file `keygate panic` makes next to the database before it
/// records its freeze, and leaves there when it cannot (a disk full) or is cut short:
/// while it exists, a running gateway refuses every client as frozen.
pub const STOP_FILE_NAME: &str = "PANIC";

/// How long the stop file may stand before a critical alert says so: a panic under way
/// removes it sooner (it waits up to 30 s for the database), one that failed does not.
pub const STOP_ALERT_AFTER: Duration = Duration::from_secs(60);

/// The stop file of the database at `database` ([`STOP_FILE_NAME`], beside it).
pub fn stop_file_of(database: &std::path::Path) -> std::path::PathBuf {
    database.with_file_name(STOP_FILE_NAME)
}

/// What the stop file of `keygate panic` says.
enum Stop {
    /// It is not there.
    Absent,
    /// It is there: every client is refused as frozen, for the reason given.
    Present(String),
    /// It cannot be looked at: it is the incident button, so that counts as a failed
    /// reload, every client refused and alerted at once, for the reason given.
    Unreadable(String),
}

/// Whether the stop file at `stop` is there.
fn stopped_by(stop: &std::path::Path) -> Stop {
    match std::fs::symlink_metadata(stop) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stop::Absent,
        Ok(_) => Stop::Present(format!(
            "{} exists: the stop file of a `keygate panic` under way, or of one that could \
             not record its freeze in the database or was cut short; every client is \
             refused as frozen while the file is there (`keygate panic` records the freeze \
             and removes it)",
            stop.display()
        )),
        Err(e) => Stop::Unreadable(format!(
            "{} (the stop file of `keygate panic`) cannot be looked at ({e}); every client \
             is refused until it can",
            stop.display()
        )),
    }
}

/// Polls `store` and reloads `live` whenever the generation changes, and every
/// [`FULL_RELOAD_INTERVAL`] whatever it says, until `live` is the only one left holding it.
/// A database file put in the place of the one `store` opened is a failed reload.
///
/// The first poll compares with the generation `live` was loaded at: a change committed
/// since (a revoke as the server starts) is loaded then, and none is loaded twice. A
/// view not loaded from a store is reloaded at the first poll. A reload that fails
/// leaves no client at all until one succeeds: the change it could not read may have
/// been a revoke, so every request is refused meanwhile rather than judged on a view
/// known to be stale. A row that does not read takes only itself out, tables that do not
/// match their seal all of them ([`Registry::load`]). With an `alerter`, the first
/// failure of a run of them raises a critical alert: every request is refused from then
/// on. So is every request while the stop file of `keygate panic` is there
/// ([`stop_file_of`]), from before this returns, and while the polls stall: when none
/// that began within [`RELOAD_STALL_LIMIT`] has finished, a second thread refuses every
/// client as for a failed reload (found by review: a poll stuck on a busy database left
/// the last view in force, with nothing bounding how long a freeze went unseen).
pub fn spawn_reloader(
    store: Store,
    master: Arc<MasterKey>,
    live: Arc<Live>,
    alerter: Option<Alerter>,
) -> std::io::Result<()> {
    let left_out = live.snapshot().refused.clone();
    alert_refusals(alerter.as_ref(), &left_out, &[]);
    let mut reloader = Reloader {
        seen: live.snapshot().generation,
        // What the last load that succeeded left out, and was alerted on: kept here, not
        // read from the snapshot, which a refusal of every client empties (found by
        // review: each standing refusal was alerted again after one).
        left_out,
        loaded_at: Instant::now(),
        read_so_far: ReadSoFar::default(),
        opened: FileIdentity::of(store.path()),
        stop: stop_file_of(store.path()),
        stopped_since: None,
        warned_unlocked: !keygate_vault::secrets_locked(),
        store,
        master,
        live,
        alerter,
    };
    reloader.check_stop_file();
    spawn_stall_watch(
        Arc::downgrade(&reloader.live),
        reloader.alerter.clone(),
        RELOAD_STALL_LIMIT,
    )?;
    std::thread::Builder::new()
        .name("keygate-reload".into())
        .spawn(move || {
            while Arc::strong_count(&reloader.live) > 1 {
                std::thread::sleep(RELOAD_INTERVAL);
                let began = Instant::now();
                reloader.poll(began);
                reloader.live.confirm(began);
            }
        })?;
    Ok(())
}

/// What [`spawn_reloader`]'s thread keeps from one poll to the next.
struct Reloader {
    store: Store,
    master: Arc<MasterKey>,
    live: Arc<Live>,
    alerter: Option<Alerter>,
    /// The generation last loaded; `None` after this reloader refused every client, so
    /// that the next poll loads whatever the generation says (a refusal by the stall
    /// watch is found by [`Live::failure`]).
    seen: Option<u64>,
    left_out: Vec<String>,
    loaded_at: Instant,
    read_so_far: ReadSoFar,
    /// The database file opened.
    opened: FileIdentity,
    /// The stop file of `keygate panic`.
    stop: std::path::PathBuf,
    stopped_since: Option<(Instant, bool)>,
    warned_unlocked: bool,
}

impl Reloader {
    /// Refuses every client while the stop file is there (or cannot be looked at);
    /// whether it refused them.
    fn check_stop_file(&mut self) -> bool {
        match stopped_by(&self.stop) {
            Stop::Absent => {
                self.stopped_since = None;
                return false;
            }
            Stop::Present(reason) => {
                let alerter = self.alerter.as_ref();
                stop_every_client(&self.live, alerter, &mut self.stopped_since, reason);
            }
            Stop::Unreadable(reason) => {
                self.stopped_since = None;
                self.refuse_all(reason);
            }
        }
        self.seen = None;
        true
    }

    /// Every request is refused from the first failure until a reload succeeds.
    fn refuse_all(&mut self, reason: String) {
        refuse_every_client(&self.live, self.alerter.as_ref(), reason);
        self.seen = None;
    }

    /// One poll, begun at `began`: the stop file, the database file, the generation, and
    /// a load when the generation moved, a full reload is due, or every client was
    /// refused meanwhile (a failure, or a stall found by [`spawn_stall_watch`]). A load
    /// that took longer than [`RELOAD_STALL_LIMIT`] is not put in force: it may miss
    /// what was committed while it read (found by review: it undid the stall watch's
    /// refusal); the next poll loads again, from where this one read the log to.
    fn poll(&mut self, began: Instant) {
        if self.check_stop_file() {
            return;
        }
        // A database put in the place of the one opened (or moved away) holds the
        // changes made from now on, which this gateway would never see, and the audit
        // events it writes would go to a file no longer anyone's.
        if FileIdentity::of(self.store.path()) != self.opened {
            self.refuse_all(format!(
                "{} is no longer the database this keygate opened (it was replaced or \
                 moved); restart serve",
                self.store.path().display()
            ));
            return;
        }
        // Without the generation no change can be seen: a revoke would never reach
        // this gateway, so that is a failed reload too.
        let generation = match self.store.generation() {
            Ok(g) => g,
            Err(e) => return self.refuse_all(format!("cannot read the store generation: {e}")),
        };
        let from_seal = self.live.read_from_seal.swap(false, Ordering::Relaxed);
        if from_seal {
            self.read_so_far = ReadSoFar::default();
        } else if Some(generation) == self.seen
            && self.loaded_at.elapsed() < FULL_RELOAD_INTERVAL
            && self.live.failure().is_none()
        {
            return;
        }
        let previous = self.live.snapshot();
        match Registry::load_after(&self.store, &self.master, &mut self.read_so_far, &previous) {
            Ok(_) if began.elapsed() > RELOAD_STALL_LIMIT => {
                tracing::warn!(
                    seconds = began.elapsed().as_secs(),
                    "a reload of accounts and clients took too long to be put in force; \
                     loading again"
                );
                self.seen = None;
            }
            Ok(registry) => {
                alert_refusals(self.alerter.as_ref(), &registry.refused, &self.left_out);
                self.left_out.clone_from(&registry.refused);
                self.live.replace(registry, began);
                self.loaded_at = Instant::now();
                if Some(generation) != self.seen {
                    tracing::info!(generation, "reloaded accounts and clients");
                }
                self.seen = Some(generation);
                if !self.warned_unlocked && !keygate_vault::secrets_locked() {
                    self.warned_unlocked = true;
                    tracing::warn!("secrets read since start-up could not be locked in memory (see `ulimit -l`); they may be written to swap");
                }
            }
            Err(e) => self.refuse_all(e.to_string()),
        }
    }
}

/// Watches `live` until it is dropped: when no poll of the store that began within
/// `limit` has finished ([`Live::view_age`]) and nothing else refuses every client,
/// refuses them all until the reloader's next poll that finishes loads them again, with
/// a critical alert through `alerter`, once a stall. Not counted as a failed reload: a
/// reload that then fails for a cause of its own is alerted on too (found by review).
fn spawn_stall_watch(
    live: Weak<Live>,
    alerter: Option<Alerter>,
    limit: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keygate-reload-watch".into())
        .spawn(move || {
            let mut alerted = false;
            while let Some(live) = live.upgrade() {
                let refused = live.refuse_if_stale(limit, |age| {
                    format!(
                        "no poll of the database for changes has finished for {} s (the \
                         database busy or slow, or a long read of the audit log): a freeze \
                         or revoke made meanwhile would not be seen",
                        age.as_secs()
                    )
                });
                if let Some(reason) = refused.filter(|_| !alerted) {
                    alerted = true;
                    tracing::error!(%reason, "refusing every request until a poll finishes");
                    if let Some(alerter) = &alerter {
                        alerter.raise(Alert::outside_log(
                            Severity::Critical,
                            AlertRule::ReloadFailed,
                            format!("keygate refuses every client: {reason}; see keygate doctor"),
                        ));
                    }
                }
                if live.view_age() <= limit {
                    alerted = false;
                }
                drop(live);
                std::thread::sleep(RELOAD_INTERVAL);
            }
        })?;
    Ok(())
}

/// Opens an account's real key.
fn open_account(
    account: &Account,
    master: &MasterKey,
) -> Result<AccountEntry, keygate_store::Error> {
    Ok(AccountEntry {
        exchange: account.exchange,
        api_key: account.open_api_key(master)?,
        secret: account.open_secret(master)?,
        upstream: account.upstream.clone(),
    })
}

/// Verifies a client's row and opens what verifies its keys: its current key and, in a
/// rotation's grace window, its previous one. `None` when the row does not verify or a
/// key does not open: the client is refused rather than half-trusted, and why is logged
/// and added to `refused`.
fn open_client(
    client: &Client,
    master: &MasterKey,
    refused: &mut Vec<String>,
) -> Option<ClientKeys> {
    let mut refuse = |why: String| leave_out(refused, why);
    let keys = match client.open_keys(master) {
        Ok((current, previous)) => std::iter::once((client.api_key.clone(), current, None))
            .chain(previous.map(|(key, m)| (key, m, client.previous_until_ms))),
        Err(e) => {
            refuse(format!(
                "the record or a key of client {} does not verify ({e}); client refused",
                client.name
            ));
            return None;
        }
    };
    let mut entries = Vec::with_capacity(2);
    for (api_key, material, valid_until) in keys {
        let verifier = match material {
            ClientKeyMaterial::Hmac(secret) => {
                Verifier::Hmac(SecretBytes::new(secret.expose_secret().as_bytes().to_vec()))
            }
            ClientKeyMaterial::Ed25519(public) => match VerifyingKey::from_bytes(&public) {
                Ok(k) => Verifier::Ed25519(k),
                Err(_) => {
                    refuse(format!(
                        "the stored Ed25519 key of client {} is not a valid point; that key \
                         is refused",
                        client.name
                    ));
                    continue;
                }
            },
        };
        entries.push((
            api_key,
            Arc::new(ClientEntry {
                name: client.name.clone(),
                account: client.account.clone(),
                status: client.status,
                expires_ms: client.expires_ms,
                key_valid_until_ms: valid_until,
                policy: client.policy.clone(),
                verifier: Arc::new(verifier),
                stops: 0,
            }),
        ));
    }
    Some(entries)
}

/// Logs `why` something was left out of a load, and adds it to `refused`.
fn leave_out(refused: &mut Vec<String>, why: String) {
    tracing::error!("{why}");
    refused.push(why);
}

/// Raises a critical alert for each thing `now` left out that `before` did not: a
/// client refused for a record changed behind keygate's back, say, is told once, when
/// it is first found, not at every reload. Counted, not only compared: a second refusal
/// worded as one before it is a new one.
fn alert_refusals(alerter: Option<&Alerter>, now: &[String], before: &[String]) {
    let Some(alerter) = alerter else { return };
    let mut told: Vec<&String> = before.iter().collect();
    for why in now {
        if let Some(at) = told.iter().position(|t| *t == why) {
            told.swap_remove(at);
            continue;
        }
        alerter.raise(Alert::outside_log(
            Severity::Critical,
            AlertRule::ReloadFailed,
            format!("keygate refuses part of the vault: {why}; see keygate doctor"),
        ));
    }
}

/// Refuses every client of `live` as frozen while the stop file of `keygate panic` is
/// there ([`Live::stop_all`]), `stopped_since` holding when it was first seen and whether
/// it was alerted on. The first sight is logged; with an `alerter`, a file that stands for
/// [`STOP_ALERT_AFTER`] raises a critical alert (found by review: raised at once, every
/// panic that waited for a passphrase or the database paged that it had failed).
fn stop_every_client(
    live: &Live,
    alerter: Option<&Alerter>,
    stopped_since: &mut Option<(Instant, bool)>,
    reason: String,
) {
    let (since, alerted) = stopped_since.get_or_insert_with(|| {
        tracing::warn!(%reason, "refusing every client as frozen while the stop file is there");
        (Instant::now(), false)
    });
    live.stop_all(reason.clone());
    if let (false, Some(alerter)) = (*alerted, alerter) {
        if since.elapsed() >= STOP_ALERT_AFTER {
            *alerted = true;
            alerter.raise(Alert::outside_log(
                Severity::Critical,
                AlertRule::ReloadFailed,
                format!(
                    "keygate refuses every client as frozen: the stop file of `keygate \
                     panic` has stood for {} s ({reason}); see keygate doctor",
                    STOP_ALERT_AFTER.as_secs()
                ),
            ));
        }
    }
}

/// Refuses every client of `live` for `reason`, until a reload succeeds: none is known,
/// as the change the reload could not read may have been a revoke. The first of a run of
/// them is logged and, with an `alerter`, raises a critical alert.
fn refuse_every_client(live: &Live, alerter: Option<&Alerter>, reason: String) {
    let first = live.refuse_all(reason.clone());
    if first {
        tracing::error!(error = %reason, "reload failed; refusing every request until it succeeds");
    }
    if let (true, Some(alerter)) = (first, alerter) {
        alerter.raise(Alert::outside_log(
            Severity::Critical,
            AlertRule::ReloadFailed,
            format!(
                "keygate refuses every client: reloading accounts and clients failed \
                 ({reason}); see keygate doctor"
            ),
        ));
    }
}

/// Which file a path names (device and inode), to tell a database replaced under a
/// running gateway from the one it opened; `None` where it cannot be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity(Option<(u64, u64)>);

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &std::path::Path) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity(std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino())))
    }

    #[cfg(not(unix))]
    fn of(_path: &std::path::Path) -> FileIdentity {
        FileIdentity(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keygate_core::{Event, EventBody, LostEvents};

    use super::*;

    fn request() -> Event {
        Event {
            ts_ms: 1,
            body: EventBody::Lost(LostEvents {
                funds_denied: Default::default(),
                count: 1,
                first_ms: 1,
                last_ms: 1,
                clients: BTreeMap::new(),
                outcomes: Vec::new(),
            }),
        }
    }

    /// Account `main`, as `keygate account add` makes it.
    fn main_account() -> keygate_store::NewAccount {
        keygate_store::NewAccount {
            label: "main".parse().unwrap(),
            exchange: Exchange::Binance,
            upstream: None,
            rotate_every_s: None,
            api_key: SecretString::new("real-key".into()),
            secret: SecretString::new("real-secret".into()),
        }
    }

    /// Waits until `live` no longer refuses every client (ten seconds at most).
    fn wait_until_served(live: &Live) {
        let started = Instant::now();
        while live.failure().is_some() {
            assert!(started.elapsed() < Duration::from_secs(10), "still refused");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A vault whose log holds `requests` events and no client or account.
    struct Vault {
        dir: tempfile::TempDir,
        master: Arc<MasterKey>,
        store: Store,
        key: AuditKey,
    }

    impl Vault {
        fn with_requests(requests: usize) -> Vault {
            let dir = tempfile::tempdir().unwrap();
            let master = MasterKey::create_key_file(&dir.path().join("master.key")).unwrap();
            let store = Store::create(&dir.path().join("keygate.db")).unwrap();
            let key = AuditKey::of_vault(&master);
            let events: Vec<Event> = (0..requests).map(|_| request()).collect();
            keygate_audit::append_within(&store, &key, &events).unwrap();
            Vault {
                dir,
                master: Arc::new(master),
                store,
                key,
            }
        }

        /// Starts a reloader of `live` on the vault, alerting through the channel returned.
        fn reload_alerting(&self, live: &Arc<Live>) -> std::sync::mpsc::Receiver<Alert> {
            let (alerter, alerts) = Alerter::channel();
            spawn_reloader(
                self.connection(),
                Arc::clone(&self.master),
                Arc::clone(live),
                Some(alerter),
            )
            .unwrap();
            alerts
        }

        /// Another connection to the vault's database, for the marker.
        fn connection(&self) -> Store {
            Store::open(&self.dir.path().join("keygate.db")).unwrap()
        }

        /// Edits event `seq` behind keygate's back.
        fn edit(&self, seq: u64) {
            self.store
                .connection()
                .execute(
                    "UPDATE events SET body = replace(body, '\"count\":1', '\"count\":2') WHERE seq = ?1",
                    [seq as i64],
                )
                .unwrap();
        }
    }

    #[test]
    fn the_marker_marks_the_log_and_checks_start_after_it() {
        let vault = Vault::with_requests(50);
        let (store, key) = (&vault.store, &vault.key);
        let live = Arc::new(Live::new(Registry::load(store, &vault.master).unwrap()));
        assert_eq!(
            live.snapshot().generation,
            Some(store.generation().unwrap())
        );

        spawn_admin_free_marker(vault.connection(), Arc::clone(&vault.master), &live, None)
            .unwrap();
        let started = Instant::now();
        while store.meta("audit_admin_free").unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(10), "never marked");
            std::thread::sleep(Duration::from_millis(20));
        }
        // An event before the mark is no longer read by the seal's check (a full
        // verification still names it): the check starts after the mark.
        vault.edit(7);
        assert!(!keygate_audit::admin_change_after(store, key, 0).unwrap());
        assert!(keygate_audit::verify(store, key).is_err());
        drop(live);
    }

    /// The reloader reads each audit event after the seal once, not every event since the
    /// database's last mark at every load (up to a minute of requests every few seconds).
    #[test]
    fn each_load_reads_the_events_after_the_last() {
        let vault = Vault::with_requests(5);
        let mut so_far = ReadSoFar::default();
        Registry::load_after(
            &vault.store,
            &vault.master,
            &mut so_far,
            &Registry::default(),
        )
        .unwrap();
        vault.edit(3);
        Registry::load_after(
            &vault.store,
            &vault.master,
            &mut so_far,
            &Registry::default(),
        )
        .unwrap();
        assert!(Registry::load(&vault.store, &vault.master).is_err());
        // What is appended since is read, and verified.
        keygate_audit::append_within(&vault.store, &vault.key, &[request(), request()]).unwrap();
        vault.edit(7);
        assert!(Registry::load_after(
            &vault.store,
            &vault.master,
            &mut so_far,
            &Registry::default()
        )
        .is_err());
    }

    /// Found by review: tables put back, seal and all, from before an administrative
    /// change that was then cut from the end of the log loaded as the latest (a revoked
    /// client served again). The log no longer ends at the head its last append recorded.
    #[test]
    fn a_load_refuses_a_log_cut_short() {
        let vault = Vault::with_requests(5);
        let mut so_far = ReadSoFar::default();
        Registry::load_after(
            &vault.store,
            &vault.master,
            &mut so_far,
            &Registry::default(),
        )
        .unwrap();
        keygate_audit::append_within(&vault.store, &vault.key, &[request(), request()]).unwrap();
        vault
            .store
            .connection()
            .execute("DELETE FROM events WHERE seq >= 6", [])
            .unwrap();
        assert!(matches!(
            Registry::load_after(
                &vault.store,
                &vault.master,
                &mut so_far,
                &Registry::default()
            ),
            Err(keygate_store::Error::Unsealed { .. })
        ));
        assert!(matches!(
            Registry::load(&vault.store, &vault.master),
            Err(keygate_store::Error::Unsealed { .. })
        ));
    }

    /// Found by review: when the marker's reading from the seal found an event before
    /// the marks edited, the database's mark was removed but the reloader kept its own,
    /// and went on loading the tables as if the log verified. It reads from the seal
    /// again then, and refuses every client, as a gateway started now would.
    #[test]
    fn the_reloader_reads_from_the_seal_when_the_marker_finds_an_edit() {
        let vault = Vault::with_requests(5);
        let (store, key) = (&vault.store, &vault.key);
        // Not loaded from the store: the reloader loads at its first poll, and its own
        // mark then names the last event.
        let live = Arc::new(Live::new(Registry::default()));
        spawn_reloader(
            vault.connection(),
            Arc::clone(&vault.master),
            Arc::clone(&live),
            None,
        )
        .unwrap();
        let started = Instant::now();
        while live.snapshot().generation.is_none() {
            assert!(started.elapsed() < Duration::from_secs(10), "never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        keygate_audit::mark_admin_free(store, key, 0, MarkFrom::LastMark).unwrap();
        vault.edit(2);

        spawn_admin_free_marker(vault.connection(), Arc::clone(&vault.master), &live, None)
            .unwrap();
        // The reloader's full reloads read on from its own mark, past the edit, and never
        // see it: only a reading from the seal does, so however long this takes, a
        // failure is that reading's. The minute (many full reloads) only bounds a
        // regression, which would wait for ever.
        let started = Instant::now();
        while live.failure().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the reloader still takes the tables"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(live.snapshot().clients.is_empty());
    }

    /// An edited event that no request reads again (older than any reconciliation) is
    /// still told of: the marker's reading from the seal raises a critical alert.
    #[test]
    fn the_marker_raises_an_alert_when_the_log_was_edited() {
        let vault = Vault::with_requests(5);
        let (store, key) = (&vault.store, &vault.key);
        let live = Arc::new(Live::new(Registry::load(store, &vault.master).unwrap()));
        // Marked, then an event before the mark edited: only a reading from the seal sees it.
        keygate_audit::mark_admin_free(store, key, 0, MarkFrom::LastMark).unwrap();
        assert!(store.meta("audit_admin_free").unwrap().is_some());
        vault.edit(2);
        assert!(!keygate_audit::admin_change_after(store, key, 0).unwrap());

        let (alerter, alerts) = Alerter::channel();
        spawn_admin_free_marker(
            vault.connection(),
            Arc::clone(&vault.master),
            &live,
            Some(alerter),
        )
        .unwrap();
        let alert = alerts.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (alert.severity, alert.rule),
            (Severity::Critical, AlertRule::LogUnreadable)
        );
        assert!(alert.summary.contains("audit verify"), "{}", alert.summary);
        assert!(store.meta("audit_admin_free").unwrap().is_none());
        drop(live);
    }

    /// A gateway started while the stop file of `keygate panic` is there refuses every
    /// client from the start, and says so (found by review: it refused them unannounced,
    /// the alert being raised only for a stop file that appeared later); taken away, the
    /// clients are loaded again.
    #[test]
    fn a_gateway_started_under_a_stop_file_refuses_every_client_and_says_so() {
        let vault = Vault::with_requests(0);
        let stop = stop_file_of(vault.store.path());
        std::fs::File::create(&stop).unwrap();
        let live = Arc::new(Live::new(
            Registry::load(&vault.store, &vault.master).unwrap(),
        ));
        let alerts = vault.reload_alerting(&live);
        let reason = live.failure().expect("refused from the start");
        assert!(reason.contains("PANIC"), "{reason}");
        assert!(live.is_stopped());
        // A panic under way removes the file within its wait for the database: no alert
        // yet (found by review: each such panic paged that it had failed).
        assert!(alerts.recv_timeout(Duration::from_millis(500)).is_err());
        std::fs::remove_file(&stop).unwrap();
        wait_until_served(&live);
        assert!(!live.is_stopped());
        drop(live);
    }

    /// A stop file that cannot be looked at is a failed reload, not a panic under way
    /// (found by review: told as "the stop file is there", and alerted a minute late).
    #[test]
    fn a_stop_file_that_cannot_be_looked_at_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        assert!(matches!(
            stopped_by(&dir.path().join("PANIC")),
            Stop::Absent
        ));
        assert!(matches!(
            stopped_by(&not_a_dir.join("PANIC")),
            Stop::Unreadable(_)
        ));
        std::fs::write(dir.path().join("PANIC"), "").unwrap();
        assert!(matches!(
            stopped_by(&dir.path().join("PANIC")),
            Stop::Present(_)
        ));
    }

    /// A stop file that stands for [`STOP_ALERT_AFTER`] is a panic that could not record
    /// its freeze: a critical alert, once.
    #[test]
    fn a_stop_file_that_stands_is_alerted_once() {
        let (alerter, alerts) = Alerter::channel();
        let live = Live::new(Registry::default());
        let long_ago = Instant::now().checked_sub(STOP_ALERT_AFTER).unwrap();
        let mut stopped_since = Some((long_ago, false));
        for _ in 0..3 {
            stop_every_client(&live, Some(&alerter), &mut stopped_since, "PANIC".into());
        }
        let raised: Vec<Alert> = alerts.try_iter().collect();
        assert_eq!(raised.len(), 1);
        assert_eq!(
            (raised[0].severity, raised[0].rule),
            (Severity::Critical, AlertRule::ReloadFailed)
        );
        assert!(
            raised[0]
                .summary
                .contains("the stop file of `keygate panic` has stood"),
            "{}",
            raised[0].summary
        );
        // A reload that fails after it is a failure of its own, alerted once for its run,
        // however many stops come between (found by review: alerted again after each).
        refuse_every_client(&live, Some(&alerter), "cannot read".into());
        assert_eq!(alerts.try_iter().count(), 1);
        assert!(!live.is_stopped());
        stop_every_client(&live, Some(&alerter), &mut None, "PANIC".into());
        refuse_every_client(&live, Some(&alerter), "cannot read".into());
        assert_eq!(alerts.try_iter().count(), 0);
        live.replace(Registry::default(), Instant::now());
        refuse_every_client(&live, Some(&alerter), "cannot read".into());
        assert_eq!(alerts.try_iter().count(), 1);
    }

    /// Something a load leaves out (a client whose record does not verify, clients
    /// sharing a key) was only logged; it is raised as a critical alert, once: at start
    /// for what the first load left out, then for what a reload leaves out anew.
    #[test]
    fn what_a_load_leaves_out_is_alerted_once() {
        let vault = Vault::with_requests(0);
        let left_out = |why: &[&str]| Registry {
            refused: why.iter().map(|w| (*w).to_owned()).collect(),
            ..Registry::default()
        };
        let live = Arc::new(Live::new(left_out(&["client a refused"])));
        let alerts = vault.reload_alerting(&live);
        let alert = alerts.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (alert.severity, alert.rule),
            (Severity::Critical, AlertRule::ReloadFailed)
        );
        assert_eq!(
            alert.summary,
            "keygate refuses part of the vault: client a refused; see keygate doctor"
        );
        drop(live);
        let (alerter, alerts) = Alerter::channel();
        let texts = |why: &[&str]| -> Vec<String> { why.iter().map(|w| (*w).to_owned()).collect() };
        let before = texts(&["client a refused"]);
        let now = texts(&["client a refused", "client b refused"]);
        alert_refusals(Some(&alerter), &now, &before);
        alert_refusals(Some(&alerter), &now, &now);
        // A second refusal worded as the first is a new one.
        alert_refusals(
            Some(&alerter),
            &texts(&["client a refused", "client a refused"]),
            &before,
        );
        let raised: Vec<String> = alerts.try_iter().map(|a| a.summary).collect();
        let told =
            |why: &str| format!("keygate refuses part of the vault: {why}; see keygate doctor");
        assert_eq!(raised, [told("client b refused"), told("client a refused")]);
    }

    /// A regression test (found by review): a refusal of every client (the stop file of
    /// `keygate panic`) emptied the snapshot the reloader compared with, so once it
    /// ended, each standing refusal was alerted again.
    #[test]
    fn a_refusal_is_not_alerted_again_after_every_client_was_refused() {
        let vault = Vault::with_requests(0);
        let master = &vault.master;
        let mut store = vault.connection();
        store
            .transaction(|s| s.insert_account(&main_account(), master, 1))
            .unwrap();
        // Its real key changed behind keygate's back, the tables sealed as they are
        // (as `keygate upgrade` does once it has shown them): the account does not open.
        store
            .connection()
            .execute(
                "UPDATE accounts SET sealed_api_key = CAST(sealed_api_key || x'00' AS BLOB)",
                [],
            )
            .unwrap();
        store.transaction(|s| s.seal_as_they_are(master)).unwrap();
        let live = Arc::new(Live::new(Registry::load(&store, master).unwrap()));
        assert_eq!(live.snapshot().refused().len(), 1);
        let alerts = vault.reload_alerting(&live);
        let first = alerts.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            first.summary.contains("account main does not open"),
            "{}",
            first.summary
        );
        let stop = stop_file_of(vault.store.path());
        std::fs::File::create(&stop).unwrap();
        let started = Instant::now();
        while !live.is_stopped() {
            assert!(started.elapsed() < Duration::from_secs(10), "never stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&stop).unwrap();
        wait_until_served(&live);
        std::thread::sleep(3 * RELOAD_INTERVAL);
        let again: Vec<String> = alerts.try_iter().map(|a| a.summary).collect();
        assert!(again.is_empty(), "{again:?}");
        drop(live);
    }

    /// Regression: a poll stuck on a busy database left the last view in force, with
    /// nothing bounding how long a freeze went unseen. Past the limit every client is
    /// refused, with a critical alert, until a poll that began since finishes.
    #[test]
    fn a_stalled_reloader_refuses_every_client_until_a_poll_finishes() {
        let live = Arc::new(Live::new(Registry::default()));
        let (alerter, alerts) = Alerter::channel();
        let limit = Duration::from_secs(3);
        spawn_stall_watch(Arc::downgrade(&live), Some(alerter), limit).unwrap();
        // No poll ever finishes.
        let alert = alerts.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.rule, AlertRule::ReloadFailed);
        assert!(
            alert.summary.contains("no poll of the database"),
            "{}",
            alert.summary
        );
        assert!(live.failure().is_some_and(|f| f.contains("no poll")));
        assert!(live.view_age() > limit);
        // Not a failed reload: one that then fails for a cause of its own is alerted on.
        assert!(live.refuse_all("the tables do not match their seal".into()));
        // A poll begins and finishes, and loads: served again, and not refused anew
        // while polls keep finishing.
        live.replace(Registry::default(), Instant::now());
        std::thread::sleep(3 * RELOAD_INTERVAL);
        assert!(live.failure().is_none());
        assert!(alerts.try_recv().is_err());
        drop(live);
    }

    /// Found by review: a load that began before every client was refused came back with
    /// the count of refusals it began with, so a request decided before the refusal was
    /// sent after it; and the stop file then froze the empty view, so that requests under
    /// a panic were recorded as of unknown keys.
    #[test]
    fn a_load_begun_before_a_refusal_keeps_it_counted_and_a_stop_freezes_the_last_load() {
        let vault = Vault::with_requests(0);
        let master = &vault.master;
        let mut store = vault.connection();
        store
            .transaction(|s| {
                s.insert_account(&main_account(), master, 1)?;
                s.insert_client(
                    &keygate_store::NewClient {
                        name: "bot1".parse().unwrap(),
                        account: "main".parse().unwrap(),
                        api_key: "key-1".into(),
                        material: ClientKeyMaterial::Hmac(SecretString::new("s".into())),
                        policy: Policy::default(),
                        expires_ms: None,
                    },
                    master,
                    1,
                )
            })
            .unwrap();
        let live = Live::new(Registry::load(&store, master).unwrap());
        let began = Instant::now();
        let loaded = Registry::load(&store, master).unwrap();
        assert!(live.refuse_all("stalled".into()));
        let refused = live.snapshot().every_client_stopped();
        live.replace(loaded, began);
        assert!(live.snapshot().every_client_stopped() >= refused);

        assert!(live.refuse_all("stalled again".into()));
        live.stop_all("the stop file is there".into());
        let stopped = live.snapshot();
        let bot = stopped
            .client("key-1")
            .expect("the client of the last load");
        assert_eq!(bot.status, ClientStatus::Frozen);
        assert!(stopped.every_client_stopped() > refused);
    }

    /// Every client refused from outside the reloader (by the stall watch) is loaded again
    /// at the next poll, not after the next full reload.
    #[test]
    fn a_view_refused_by_the_stall_watch_is_loaded_at_the_next_poll() {
        let vault = Vault::with_requests(0);
        let live = Arc::new(Live::new(
            Registry::load(&vault.store, &vault.master).unwrap(),
        ));
        let _alerts = vault.reload_alerting(&live);
        std::thread::sleep(2 * RELOAD_INTERVAL);
        assert!(live.view_age() < RELOAD_STALL_LIMIT);
        assert!(live
            .refuse_if_stale(Duration::ZERO, |_| "stalled".into())
            .is_some());
        let started = Instant::now();
        while live.failure().is_some() {
            assert!(
                started.elapsed() < FULL_RELOAD_INTERVAL / 2,
                "not loaded again until a full reload"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(live);
    }

    /// A reload decrypts only the rows that changed: an unchanged client or account is
    /// the very entry the load before opened, a changed one is opened afresh.
    #[test]
    fn a_reload_opens_again_only_the_rows_that_changed() {
        use keygate_store::NewClient;

        let vault = Vault::with_requests(0);
        let master = &vault.master;
        let mut store = vault.connection();
        let client = |name: &str, api_key: &str| NewClient {
            name: name.parse().unwrap(),
            account: "main".parse().unwrap(),
            api_key: api_key.into(),
            material: ClientKeyMaterial::Hmac(SecretString::new("virtual secret".into())),
            policy: Policy::default(),
            expires_ms: None,
        };
        store
            .transaction(|s| {
                s.insert_account(&main_account(), master, 1)?;
                s.insert_client(&client("bot1", "key-1"), master, 1)?;
                s.insert_client(&client("bot2", "key-2"), master, 1)
            })
            .unwrap();
        let mut so_far = ReadSoFar::default();
        let first =
            Registry::load_after(&store, master, &mut so_far, &Registry::default()).unwrap();
        store
            .transaction(|s| {
                s.set_client_status(
                    &"bot1".parse().unwrap(),
                    ClientStatus::Active,
                    ClientStatus::Frozen,
                    master,
                )
            })
            .unwrap();
        let second = Registry::load_after(&store, master, &mut so_far, &first).unwrap();

        let main: Name = "main".parse().unwrap();
        assert!(Arc::ptr_eq(
            first.account(&main).unwrap(),
            second.account(&main).unwrap()
        ));
        assert!(Arc::ptr_eq(
            first.client("key-2").unwrap(),
            second.client("key-2").unwrap()
        ));
        let frozen = second.client("key-1").unwrap();
        assert!(!Arc::ptr_eq(first.client("key-1").unwrap(), frozen));
        assert_eq!(frozen.status, ClientStatus::Frozen);
        // Loaded afresh, nothing is carried over.
        let fresh = Registry::load(&store, master).unwrap();
        assert!(!Arc::ptr_eq(
            second.client("key-2").unwrap(),
            fresh.client("key-2").unwrap()
        ));
    }
}
