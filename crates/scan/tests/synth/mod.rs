//! Synthetic credentials of the right shape, planted in the layouts real projects use,
//! plus decoys that must not be reported. Shared by the tests and the benchmark.

#![allow(dead_code)]

use base64::Engine as _;
use rand::Rng;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub fn alnum(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

pub fn hex_lower(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| b"0123456789abcdef"[rng.gen_range(0..16)] as char)
        .collect()
}

pub fn b64(rng: &mut impl Rng, bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
    base64::engine::general_purpose::STANDARD.encode(v)
}

pub fn uuid(rng: &mut impl Rng) -> String {
    let h = hex_lower(rng, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub fn pem_ed25519(rng: &mut impl Rng) -> String {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend((0..32).map(|_| rng.gen::<u8>()));
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{b}\n-----END PRIVATE KEY-----\n")
}

/// A random P-256 secret key.
fn p256_key(rng: &mut impl Rng) -> p256::SecretKey {
    loop {
        let bytes: [u8; 32] = rng.gen();
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

pub fn pem_p256(rng: &mut impl Rng) -> String {
    p256_key(rng)
        .to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// A P-256 private key as PKCS#8 PEM (`PRIVATE KEY`), as `openssl pkcs8 -topk8` makes it.
pub fn pem_p256_pkcs8(rng: &mut impl Rng) -> String {
    use p256::pkcs8::EncodePrivateKey;
    p256_key(rng)
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// `value` as a URL's query string or form body writes it: `+`, `/` and `=` as `%2B`,
/// `%2F` and `%3D` (upper-case hex, or lower-case with `lower`).
pub fn percent_encoded(value: &str, lower: bool) -> String {
    let encoded = value
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    if lower {
        encoded
            .replace("%2B", "%2b")
            .replace("%2F", "%2f")
            .replace("%3D", "%3d")
    } else {
        encoded
    }
}

/// Expands `${alnum:N}`, `${hexlower:N}`, `${hexupper:N}`, `${b64:BYTES}`, `${b64pct:BYTES}`
/// (base64 with `+`, `/` and `=` percent-encoded), `${uuid}`, `${pem-ed25519}`,
/// `${pem-p256}`, `${pem-p256-pkcs8}` and `${pem-p256-json}` (newlines as `\n` escapes).
pub fn expand(template: &str, rng: &mut impl Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').unwrap() + i;
        let spec = &rest[i + 2..j];
        let (name, arg) = spec.split_once(':').unwrap_or((spec, "0"));
        let n: usize = arg.parse().unwrap();
        out.push_str(&match name {
            "alnum" => alnum(rng, n),
            "hexlower" => hex_lower(rng, n),
            "hexupper" => hex_lower(rng, n).to_ascii_uppercase(),
            "b64" => b64(rng, n),
            "b64pct" => percent_encoded(&b64(rng, n), false),
            "uuid" => uuid(rng),
            "pem-ed25519" => pem_ed25519(rng),
            "pem-p256" => pem_p256(rng),
            "pem-p256-pkcs8" => pem_p256_pkcs8(rng),
            "pem-p256-json" => pem_p256(rng).replace('\n', "\\n"),
            other => panic!("unknown placeholder {other}"),
        });
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

/// One planted credential set.
#[derive(Clone, Debug)]
pub struct Cred {
    pub exchange: &'static str,
    /// ccxt / freqtrade id.
    pub id: &'static str,
    /// Environment-variable prefix.
    pub env: &'static str,
    pub key: String,
    pub secret: String,
    pub passphrase: Option<String>,
}

pub const EXCHANGES: &[&str] = &[
    "binance", "coinbase", "kraken", "okx", "bybit", "kucoin", "gate", "bitfinex",
];

/// A random credential of `exchange`; `variant` picks among an exchange's key types.
pub fn cred(exchange: &str, variant: usize, rng: &mut impl Rng) -> Cred {
    let c = |exchange, id, env, key, secret, passphrase| Cred {
        exchange,
        id,
        env,
        key,
        secret,
        passphrase,
    };
    match exchange {
        "binance" => c(
            "binance",
            "binance",
            "BINANCE",
            alnum(rng, 64),
            alnum(rng, 64),
            None,
        ),
        "coinbase" => match variant % 3 {
            0 => c(
                "coinbase",
                "coinbase",
                "COINBASE",
                format!("organizations/{}/apiKeys/{}", uuid(rng), uuid(rng)),
                pem_p256(rng),
                None,
            ),
            1 => c(
                "coinbase",
                "coinbase",
                "COINBASE",
                uuid(rng),
                b64(rng, 64),
                None,
            ),
            _ => c(
                "coinbase",
                "coinbase",
                "COINBASE",
                alnum(rng, 16),
                alnum(rng, 32),
                None,
            ),
        },
        "kraken" => c(
            "kraken",
            "kraken",
            "KRAKEN",
            b64(rng, 42),
            b64(rng, 64),
            None,
        ),
        "okx" => c(
            "okx",
            "okx",
            "OKX",
            uuid(rng),
            hex_lower(rng, 32).to_ascii_uppercase(),
            Some(format!("Pw{}!", alnum(rng, 10))),
        ),
        "bybit" => c(
            "bybit",
            "bybit",
            "BYBIT",
            alnum(rng, 18),
            alnum(rng, 36),
            None,
        ),
        "kucoin" => c(
            "kucoin",
            "kucoin",
            "KUCOIN",
            hex_lower(rng, 24),
            uuid(rng),
            Some(format!("Pw{}!", alnum(rng, 10))),
        ),
        "gate" => c(
            "gate",
            "gate",
            "GATE",
            hex_lower(rng, 32),
            hex_lower(rng, 64),
            None,
        ),
        "bitfinex" => c(
            "bitfinex",
            "bitfinex",
            "BITFINEX",
            alnum(rng, 43),
            alnum(rng, 43),
            None,
        ),
        other => panic!("unknown exchange {other}"),
    }
}

fn one_line(v: &str) -> String {
    v.trim_end().replace('\n', "\\n")
}

fn yaml_value(v: &str, indent: usize) -> String {
    if v.contains('\n') {
        let pad = " ".repeat(indent + 2);
        format!(
            "|\n{}",
            v.trim_end()
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    } else {
        v.to_owned()
    }
}

/// The credential written in one layout: `(file name, content)`.
pub fn layouts(c: &Cred) -> Vec<(String, String)> {
    let (k, s) = (one_line(&c.key), one_line(&c.secret));
    let e = c.env;
    let id = c.id;
    let mut out = Vec::new();
    let pass_env = c
        .passphrase
        .as_ref()
        .map(|p| format!("{e}_API_PASSPHRASE={p}\n"))
        .unwrap_or_default();
    out.push((
        ".env".into(),
        format!(
            "# trading bot\nLOG_LEVEL=info\n{e}_API_KEY={k}\n{e}_API_SECRET=\"{s}\"\n{pass_env}"
        ),
    ));
    let pw = c.passphrase.clone().unwrap_or_default();
    out.push((
        "config.json".into(),
        format!(
            "{{\n  \"max_open_trades\": 3,\n  \"stake_currency\": \"USDT\",\n  \"exchange\": {{\n    \"name\": \"{id}\",\n    \"key\": \"{k}\",\n    \"secret\": \"{s}\",\n    \"password\": \"{pw}\",\n    \"ccxt_config\": {{}},\n    \"pair_whitelist\": [\"BTC/USDT\"]\n  }}\n}}\n"
        ),
    ));
    let filler: String = (0..12).map(|i| format!("    setting_{i}: {i}\n")).collect();
    let pass_yaml = c
        .passphrase
        .as_ref()
        .map(|p| format!("      passphrase: {p}\n"))
        .unwrap_or_default();
    out.push((
        "settings.yaml".into(),
        format!(
            "exchanges:\n  {id}:\n{filler}    credentials:\n      api_key: {}\n      api_secret: {}\n{pass_yaml}  other:\n    enabled: false\n",
            yaml_value(&c.key, 6),
            yaml_value(&c.secret, 6)
        ),
    ));
    let pass_toml = c
        .passphrase
        .as_ref()
        .map(|p| format!("passphrase = \"{p}\"\n"))
        .unwrap_or_default();
    out.push((
        "bot.toml".into(),
        format!("[exchanges.{id}]\napi_key = \"{k}\"\nsecret = \"{s}\"\n{pass_toml}"),
    ));
    let pass_py = c
        .passphrase
        .as_ref()
        .map(|p| format!("    'password': '{p}',\n"))
        .unwrap_or_default();
    out.push((
        "trade.py".into(),
        format!("import ccxt\n\n\ndef make():\n    return ccxt.{id}({{\n        'apiKey': '{k}',\n        'secret': '{s}',\n    {pass_py}    }})\n"),
    ));
    let pass_js = c
        .passphrase
        .as_ref()
        .map(|p| format!(", password: '{p}'"))
        .unwrap_or_default();
    out.push(("bot.js".into(), format!("const ccxt = require('ccxt');\nconst ex = new ccxt.{id}({{ apiKey: '{k}', secret: '{s}'{pass_js} }});\n")));
    let pass_sh = c
        .passphrase
        .as_ref()
        .map(|p| format!("export {e}_PASSPHRASE='{p}'\n"))
        .unwrap_or_default();
    out.push(("deploy.sh".into(), format!("#!/bin/sh\nset -e\nexport {e}_KEY='{k}'\nexport {e}_SECRET='{s}'\n{pass_sh}./bot run\n")));
    let nb_pass = c
        .passphrase
        .as_ref()
        .map(|p| format!(", password=\\\"{p}\\\""))
        .unwrap_or_default();
    out.push((
        "analysis.ipynb".into(),
        format!(
            "{{\n \"cells\": [\n  {{\n   \"cell_type\": \"code\",\n   \"source\": [\n    \"import ccxt\\n\",\n    \"ex = ccxt.{id}(dict(apiKey=\\\"{}\\\", secret=\\\"{}\\\"{nb_pass}))\\n\"\n   ]\n  }}\n ],\n \"nbformat\": 4\n}}\n",
            k.replace('\\', "\\\\"),
            s.replace('\\', "\\\\")
        ),
    ));
    out.push((
        "SETUP.md".into(),
        format!("# Setup\n\nPut your keys in `.env`:\n\n```sh\n{e}_API_KEY={k}\n{e}_API_SECRET={s}\n{pass_env}```\n"),
    ));
    let hb = if id == "gate" { "gate_io" } else { id };
    let pass_hb = c
        .passphrase
        .as_ref()
        .map(|p| format!("{hb}_passphrase: {p}\n"))
        .unwrap_or_default();
    out.push((
        "conf_connectors.yml".into(),
        format!(
            "{hb}_api_key: {}\n{hb}_secret_key: {}\n{pass_hb}",
            yaml_value(&c.key, 0),
            yaml_value(&c.secret, 0)
        ),
    ));
    out
}

/// Files that look like credentials but are not; none may be reported.
pub fn decoys(rng: &mut impl Rng) -> Vec<(String, String)> {
    vec![
        (".env.example".into(), "BINANCE_API_KEY=your_binance_api_key_here\nBINANCE_API_SECRET=<your secret>\nOKX_API_KEY=${OKX_API_KEY}\nOKX_PASSPHRASE=\nKRAKEN_API_SECRET=changeme\n".into()),
        ("settings.py".into(), "import os\nBINANCE_API_KEY = os.environ['BINANCE_API_KEY']\nKUCOIN_PASSPHRASE = os.getenv('KUCOIN_PASSPHRASE')\n".into()),
        ("Cargo.lock".into(), format!("[[package]]\nname = \"gate\"\nversion = \"0.1.0\"\nchecksum = \"{}\"\n", hex_lower(rng, 64))),
        ("package-lock.json".into(), format!("{{\n  \"kucoin-api\": {{\n    \"version\": \"1.0.0\",\n    \"resolved\": \"https://registry.example/kucoin-api/-/kucoin-api-1.0.0.tgz\",\n    \"integrity\": \"sha512-{}\",\n    \"requestId\": \"{}\"\n  }}\n}}\n", b64(rng, 64), uuid(rng))),
        ("short.env".into(), format!("BINANCE_API_KEY={}\nKRAKEN_API_KEY={}\n", alnum(rng, 63), b64(rng, 41))),
        ("no_context.txt".into(), format!("session = \"{}\"\ntoken = \"{}\"\n", alnum(rng, 64), b64(rng, 64))),
        ("okx_lower.env".into(), format!("OKX_SECRET_KEY={}\n", hex_lower(rng, 32))),
        ("orders.json".into(), format!("{{\"exchange\": \"bybit\", \"orderLinkId\": \"{}\", \"kucoin_order\": \"{}\"}}\n", alnum(rng, 36), uuid(rng))),
        ("tls.pem".into(), pem_p256(rng)),
        ("ed.pem".into(), pem_ed25519(rng)),
        ("logo.md".into(), format!("Kraken logo: ![k](data:image/png;base64,{})\n", b64(rng, 600))),
        ("hashes.txt".into(), format!("delegate gateway navigate: {}\naggregate {}\n", hex_lower(rng, 64), hex_lower(rng, 32))),
        ("readme.md".into(), "Coinbase CDP keys look like organizations/{org_id}/apiKeys/{key_id}.\n".into()),
    ]
}
