//! What the gateway tests and the load benchmark both need: one account and one client in
//! a fresh store, loaded into a gateway as `keygate serve` loads them.
//!
//! `examples/loadbench.rs` and `benches/request_path.rs` include this file by path, and
//! each uses part of it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use keygate_audit::{AuditKey, AuditLog};
use keygate_core::{Policy, Scope};
use keygate_gateway::registry::{spawn_reloader, Live, Registry};
use keygate_gateway::Gateway;
use keygate_store::{ClientKeyMaterial, NewAccount, NewClient, Store};
use keygate_vault::{MasterKey, SecretString};
use rust_decimal::Decimal;

/// The real key and secret, which only the exchange (the simulator) and the vault know.
pub const REAL_KEY: &str = "REALKEYrealkeyREALKEYrealkeyREALKEYrealkeyREALKEYrealkeyREALKEY1";
pub const REAL_SECRET: &str = "REALSECRETrealsecretREALSECRETrealsecretREALSECRETrealsecret0001";
/// The bot's virtual key and secret.
pub const BOT_KEY: &str = "botkeyBOTKEYbotkeyBOTKEYbotkeyBOTKEYbotkeyBOTKEYbotkeyBOTKEY0001";
pub const BOT_SECRET: &str = "botsecretBOTSECRETbotsecretBOTSECRETbotsecretBOTSECRETbotsec001";

/// Reads and trades of BTCUSDT and ETHUSDT, at most 5000 USDT an order; no daily or
/// rate limit, so that a benchmark's millions of orders are all allowed.
pub fn trading_policy() -> Policy {
    Policy {
        scopes: [Scope::Read, Scope::Trade].into_iter().collect(),
        symbols: Some(
            ["BTCUSDT".to_owned(), "ETHUSDT".to_owned()]
                .into_iter()
                .collect(),
        ),
        max_order_notional: Some(Decimal::from(5000)),
        ..Policy::default()
    }
}

/// The bot's client, as issued.
pub struct Bot {
    pub material: ClientKeyMaterial,
    pub policy: Policy,
}

/// A store at `dir/keygate.db` with the account `main` (the real key, sent to
/// `upstream`) and the client `bot1`, valid for an hour; a gateway over it, with the
/// reload thread and the audit writer running. Returns the gateway and the audit key.
pub fn gateway_over(
    dir: &Path,
    upstream: &str,
    bot: Bot,
    upstream_timeout: Duration,
) -> (Gateway, AuditKey) {
    let (gateway, audit_key, _) = gateway_behind(dir, upstream, bot, upstream_timeout, vec![]);
    (gateway, audit_key)
}

/// [`gateway_over`], believing `X-Forwarded-For` from peers in `trusted_proxies`, as
/// `keygate serve --trusted-proxy` does; with the live view its reloader keeps.
pub fn gateway_behind(
    dir: &Path,
    upstream: &str,
    bot: Bot,
    upstream_timeout: Duration,
    trusted_proxies: Vec<IpNet>,
) -> (Gateway, AuditKey, Arc<Live>) {
    let db = dir.join("keygate.db");
    let master = MasterKey::create_key_file(&dir.join("master.key")).unwrap();
    let store = Store::create(&db).unwrap();
    let now = keygate_gateway::now_ms();
    store
        .insert_account(
            &NewAccount {
                label: "main".parse().unwrap(),
                exchange: keygate_core::Exchange::Binance,
                upstream: Some(upstream.to_owned()),
                rotate_every_s: None,
                api_key: SecretString::new(REAL_KEY.into()),
                secret: SecretString::new(REAL_SECRET.into()),
            },
            &master,
            now,
        )
        .unwrap();
    store
        .insert_client(
            &NewClient {
                name: "bot1".parse().unwrap(),
                account: "main".parse().unwrap(),
                api_key: BOT_KEY.into(),
                material: bot.material,
                policy: bot.policy,
                expires_ms: Some(now + 3_600_000),
            },
            &master,
            now,
        )
        .unwrap();
    let live = Arc::new(Live::new(Registry::load(&store, &master).unwrap()));
    let audit_key = AuditKey::from_bytes(master.derive_subkey("audit-mac").expose_secret());
    spawn_reloader(store, std::sync::Arc::new(master), live.clone(), None).unwrap();
    let audit = AuditLog::start(&db, audit_key.clone()).unwrap();
    let gateway =
        Gateway::new(Arc::clone(&live), audit, trusted_proxies, upstream_timeout).unwrap();
    (gateway, audit_key, live)
}
