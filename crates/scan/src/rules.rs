//! Rules as data: one TOML file per exchange under `rules/`, embedded and compiled.

use std::sync::OnceLock;

use base64::Engine as _;
use serde::Deserialize;

use crate::Error;

/// The embedded rule files, one per exchange.
pub const BUILTIN_RULE_FILES: &[(&str, &str)] = &[
    ("binance.toml", include_str!("../rules/binance.toml")),
    ("coinbase.toml", include_str!("../rules/coinbase.toml")),
    ("kraken.toml", include_str!("../rules/kraken.toml")),
    ("okx.toml", include_str!("../rules/okx.toml")),
    ("bybit.toml", include_str!("../rules/bybit.toml")),
    ("kucoin.toml", include_str!("../rules/kucoin.toml")),
    ("gate.toml", include_str!("../rules/gate.toml")),
    ("bitfinex.toml", include_str!("../rules/bitfinex.toml")),
];

/// What part of a credential set a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The public half: API key, key id or key name.
    Key,
    /// The signing secret or private key.
    Secret,
    /// A passphrase that completes a key (OKX, KuCoin, Coinbase Exchange).
    Passphrase,
    /// Same shape for key and secret; the field name or position decides.
    Any,
}

/// Whether a field name such as `api_secret` must introduce the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// The field name is not looked at.
    None,
    /// A field name helps decide the role but is not needed.
    Optional,
    /// A field name naming the rule's role must introduce the value.
    Required,
    /// A field name naming the role, or another part of the same exchange nearby.
    Paired,
    /// A field name naming the rule's role, or none at all: a value of the shape under
    /// any other name (`orderNo`, `memo`) is something else, as KuCoin's record ids are
    /// 24 lowercase hex like its keys.
    RoleOrNone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum CharClass {
    Upper,
    Lower,
    Digit,
    Letter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeFile {
    exchange: String,
    display: String,
    keywords: Vec<String>,
    #[serde(default)]
    common_words: Vec<String>,
    fix: String,
    documentation_examples: Vec<String>,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    description: String,
    role: Role,
    shape: Option<String>,
    #[serde(default)]
    pem: Vec<String>,
    #[serde(default)]
    validate: Vec<String>,
    #[serde(default)]
    classes: Vec<CharClass>,
    min_entropy: Option<f64>,
    label: LabelMode,
    #[serde(default = "yes")]
    context: bool,
    #[serde(default)]
    prefilter: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    examples: Vec<String>,
    negative_examples: Vec<String>,
}

fn yes() -> bool {
    true
}

/// An exchange: its keywords, its fix text and its published example keys.
#[derive(Debug)]
pub struct Exchange {
    /// Short id, such as `binance`.
    pub id: String,
    /// Display name, such as `Binance`.
    pub display: String,
    /// Words that tie a nearby value to this exchange (matched case-insensitively,
    /// with no letter directly before or after).
    pub keywords: Vec<String>,
    /// Those of `keywords` that are also common words (`gate`): not counted as the last
    /// word of a compound name (`quality-gate`, `feature_gate`, `featureGate`).
    pub common_words: Vec<String>,
    /// A one-line fix shown with every finding.
    pub fix: String,
    /// Values published in the exchange's documentation: found, but reported as suppressed.
    pub documentation_examples: Vec<String>,
}

/// How a value is checked offline after its shape matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validator {
    /// Standard base64 decoding to exactly this many bytes.
    Base64Len(usize),
    /// A P-256 secret key: SEC1 (`EC PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
    P256,
    /// A PKCS#8 Ed25519 or RSA key, or a PKCS#1 RSA key.
    Pkcs8Ed25519OrRsa,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Rule id, such as `kraken.private-key`.
    pub id: String,
    /// One-line description.
    pub description: String,
    /// Index of the exchange in [`RuleSet::exchanges`].
    pub exchange: usize,
    /// What part of a credential this rule finds.
    pub role: Role,
    /// Positive examples (`${alnum:64}`-style placeholders allowed).
    pub examples: Vec<String>,
    /// Negative examples.
    pub negative_examples: Vec<String>,
    pub(crate) label: LabelMode,
    pub(crate) context: bool,
    pub(crate) shape: Option<regex::bytes::Regex>,
    pub(crate) min_len: usize,
    pub(crate) max_len: usize,
    pub(crate) pem: Vec<String>,
    pub(crate) validators: Vec<Validator>,
    classes: Vec<CharClass>,
    min_entropy: Option<f64>,
    pub(crate) prefilter: Vec<String>,
    /// Rules (indices into [`RuleSet::rules`], same exchange) one of whose values must be
    /// in the same credential set for a value of this rule to be reported; empty when a
    /// value of this rule counts on its own.
    pub(crate) requires: Vec<usize>,
}

/// A compiled set of rules for several exchanges.
#[derive(Debug)]
pub struct RuleSet {
    exchanges: Vec<Exchange>,
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules shipped in this crate.
    pub fn builtin() -> &'static RuleSet {
        static BUILTIN: OnceLock<RuleSet> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The embedded files are compiled by the test `rules::builtin_rules_load`;
            // a failure here is a defect of this build, not of the input.
            #[allow(clippy::expect_used)]
            RuleSet::from_toml(BUILTIN_RULE_FILES).expect("embedded rules are valid")
        })
    }

    /// Compiles rule files given as `(name, TOML text)` pairs.
    pub fn from_toml(files: &[(&str, &str)]) -> Result<RuleSet, Error> {
        let mut set = RuleSet {
            exchanges: Vec::new(),
            rules: Vec::new(),
        };
        // `requires` names rules by id, possibly later in the file: resolved at the end.
        let mut required: Vec<(String, Vec<String>)> = Vec::new();
        for (name, text) in files {
            let bad = |message: String| Error::Rules {
                file: (*name).to_owned(),
                message,
            };
            let file: ExchangeFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
            let exchange = set.exchanges.len();
            let keywords: Vec<String> = file
                .keywords
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect();
            let common_words: Vec<String> = file
                .common_words
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect();
            if let Some(stray) = common_words.iter().find(|w| !keywords.contains(w)) {
                return Err(bad(format!(
                    "common word '{stray}' is not one of the keywords"
                )));
            }
            set.exchanges.push(Exchange {
                id: file.exchange,
                display: file.display,
                keywords,
                common_words,
                fix: file.fix,
                documentation_examples: file.documentation_examples,
            });
            for spec in file.rules {
                let (shape, min_len, max_len) = match &spec.shape {
                    Some(pattern) => {
                        let hir = regex_syntax::parse(pattern)
                            .map_err(|e| bad(format!("{}: {e}", spec.id)))?;
                        let props = hir.properties();
                        let min = props.minimum_len().unwrap_or(0);
                        let max = props.maximum_len().unwrap_or(usize::MAX);
                        let re = regex::bytes::Regex::new(&format!("^(?:{pattern})$"))
                            .map_err(|e| bad(format!("{}: {e}", spec.id)))?;
                        (Some(re), min, max)
                    }
                    None => (None, 0, 0),
                };
                if shape.is_none() && spec.pem.is_empty() && spec.role != Role::Passphrase {
                    return Err(bad(format!("{}: needs a shape or pem labels", spec.id)));
                }
                if max_len > crate::engine::MAX_TOKEN {
                    return Err(bad(format!(
                        "{}: shape longer than {}",
                        spec.id,
                        crate::engine::MAX_TOKEN
                    )));
                }
                let validators = spec
                    .validate
                    .iter()
                    .map(|v| {
                        parse_validator(v)
                            .ok_or_else(|| bad(format!("{}: unknown validator {v}", spec.id)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                required.push(((*name).to_owned(), spec.requires));
                set.rules.push(Rule {
                    id: spec.id,
                    description: spec.description,
                    exchange,
                    role: spec.role,
                    examples: spec.examples,
                    negative_examples: spec.negative_examples,
                    label: spec.label,
                    context: spec.context,
                    shape,
                    min_len,
                    max_len,
                    pem: spec.pem,
                    validators,
                    classes: spec.classes,
                    min_entropy: spec.min_entropy,
                    prefilter: spec.prefilter,
                    requires: Vec::new(),
                });
            }
        }
        for (i, (file, ids)) in required.into_iter().enumerate() {
            let mut requires = Vec::with_capacity(ids.len());
            for id in ids {
                let rule = &set.rules[i];
                let found = set
                    .rules
                    .iter()
                    .position(|r| r.id == id && r.exchange == rule.exchange && r.role != rule.role);
                let Some(j) = found else {
                    return Err(Error::Rules {
                        file,
                        message: format!(
                            "{}: requires {id}, which is not a rule of the same exchange \
                             for another part of the credential",
                            rule.id
                        ),
                    });
                };
                requires.push(j);
            }
            set.rules[i].requires = requires;
        }
        Ok(set)
    }

    /// The exchanges, indexed by [`Rule::exchange`].
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// All rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The exchange a rule belongs to.
    pub fn exchange_of(&self, rule: &Rule) -> &Exchange {
        &self.exchanges[rule.exchange]
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

/// Whether `token` is words run together in camel case (`createOrderWithTakeProfitAnd`,
/// `CancelAllOrdersAfterTimeout`, `privatePostV5AssetExchangeQuoteApply`): at least 24
/// characters, at least two capitals, each followed by a small letter, but for version
/// tags: `V` and one or two digits (`V5`, `V3`, `v3` at the start, as ccxt names the
/// methods of an exchange's API versions), maybe a pre-release (`V1beta3`), followed by
/// a capital or the end; and for durations, one or two digits and a unit (`24hr`, `30d`)
/// followed by a capital or the end. No digit stands anywhere else. A library's method
/// names have the shapes of keys (ccxt's source has 36-character ones beside `bybit`); a
/// random value of 24 letters and digits is written so about once in twelve thousand
/// (once in 14 500 without the durations, 15 200 without the version tags either), one
/// of 32 (the shortest mixed-case key shape this long) once in 250 000, one of 36 (a
/// Bybit secret) once in 1.1 million, longer ones far more rarely (shorter keys, 18
/// characters, are left alone: one in 1 500 would be). These odds count every string
/// of the alphabet that the test takes, by the position of each character.
fn is_camel_case_words(token: &[u8]) -> bool {
    token.len() >= 24 && is_made_of_camel_case_words(token)
}

/// Whether `token` reads as words in camel case, with version tags, whatever its length
/// (see [`is_camel_case_words`]): for an identifier that names an exchange
/// (`bybitTestnetApiKey`), whose keyword stays context though the identifier has a key's
/// shape.
pub(crate) fn is_made_of_camel_case_words(token: &[u8]) -> bool {
    let capitals = token.iter().filter(|b| b.is_ascii_uppercase()).count();
    capitals >= 2 && {
        let mut i = 0;
        loop {
            let Some(&b) = token.get(i) else {
                break true;
            };
            let digits = token[i + 1..]
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .count();
            let tag = (b == b'V' || (b == b'v' && i == 0)) && (1..=2).contains(&digits);
            // A pre-release version: `V1beta3`, `V2alpha1` (Alpaca's, Kubernetes' APIs).
            let pre_release = if tag {
                pre_release_len(&token[i + 1 + digits..])
            } else {
                0
            };
            let tag_len = 1 + digits + pre_release;
            if tag && token.get(i + tag_len).is_none_or(u8::is_ascii_uppercase) {
                i += tag_len;
            } else if b.is_ascii_lowercase() {
                i += 1;
            } else if b.is_ascii_uppercase() && token.get(i + 1).is_some_and(u8::is_ascii_lowercase)
            {
                i += 2;
            } else if let Some(n) = duration_len(&token[i..]) {
                i += n;
            } else {
                break false;
            }
        }
    }
}

/// The length of the duration `rest` starts with (`24hr`, `24h`, `30d`, `1m`, `4w`: one
/// or two digits and a unit, then a capital or the end), or `None`: a word of method
/// names after API paths (Bybit's `publicGetSpotV3PublicQuoteTicker24hr`).
fn duration_len(rest: &[u8]) -> Option<usize> {
    let digits = rest.iter().take_while(|d| d.is_ascii_digit()).count();
    if !(1..=2).contains(&digits) {
        return None;
    }
    ["hr", "h", "d", "m", "w"].iter().find_map(|unit| {
        let after = rest[digits..].strip_prefix(unit.as_bytes())?;
        after
            .first()
            .is_none_or(u8::is_ascii_uppercase)
            .then_some(digits + unit.len())
    })
}

/// The length of the pre-release part `rest` starts with (`beta3`, `alpha1`: the word,
/// then one or two digits), or 0.
fn pre_release_len(rest: &[u8]) -> usize {
    ["alpha", "beta"]
        .iter()
        .find_map(|word| {
            let after = rest.strip_prefix(word.as_bytes())?;
            let digits = after.iter().take_while(|d| d.is_ascii_digit()).count();
            (1..=2).contains(&digits).then_some(word.len() + digits)
        })
        .unwrap_or(0)
}

fn parse_validator(name: &str) -> Option<Validator> {
    match name {
        "p256" => Some(Validator::P256),
        "pkcs8-ed25519-or-rsa" => Some(Validator::Pkcs8Ed25519OrRsa),
        _ => name
            .strip_prefix("base64-len:")?
            .parse()
            .ok()
            .map(Validator::Base64Len),
    }
}

impl Rule {
    /// Character-class and entropy checks on a value whose shape matched; and no value
    /// made of words ([`is_camel_case_words`]).
    pub(crate) fn accepts_token(&self, token: &[u8]) -> bool {
        if is_camel_case_words(token) {
            return false;
        }
        for class in &self.classes {
            let ok = match class {
                CharClass::Upper => token.iter().any(u8::is_ascii_uppercase),
                CharClass::Lower => token.iter().any(u8::is_ascii_lowercase),
                CharClass::Digit => token.iter().any(u8::is_ascii_digit),
                CharClass::Letter => token.iter().any(u8::is_ascii_alphabetic),
            };
            if !ok {
                return false;
            }
        }
        if let Some(min) = self.min_entropy {
            if shannon_entropy(token) < min {
                return false;
            }
        }
        self.validators.iter().all(|v| match v {
            Validator::Base64Len(n) => base64::engine::general_purpose::STANDARD
                .decode(token)
                .is_ok_and(|d| d.len() == *n),
            // PEM validators run on decoded DER, see `accepts_der`.
            Validator::P256 | Validator::Pkcs8Ed25519OrRsa => true,
        })
    }

    /// Offline validation of a decoded PEM body.
    pub(crate) fn accepts_der(&self, label: &str, der: &[u8]) -> bool {
        self.pem.iter().any(|l| l == label)
            && self.validators.iter().all(|v| match v {
                Validator::P256 => is_p256(label, der),
                Validator::Pkcs8Ed25519OrRsa => is_ed25519_or_rsa(label, der),
                Validator::Base64Len(_) => true,
            })
    }
}

/// Whether `der` is a P-256 secret key: SEC1 under `EC PRIVATE KEY`, PKCS#8 otherwise.
fn is_p256(label: &str, der: &[u8]) -> bool {
    use p256::pkcs8::DecodePrivateKey;
    if label == "EC PRIVATE KEY" {
        p256::SecretKey::from_sec1_der(der).is_ok()
    } else {
        p256::SecretKey::from_pkcs8_der(der).is_ok()
    }
}

fn is_ed25519_or_rsa(label: &str, der: &[u8]) -> bool {
    const ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
    const RSA: pkcs8::ObjectIdentifier =
        pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    if label == "RSA PRIVATE KEY" {
        // PKCS#1: a DER SEQUENCE long enough to hold a 1024-bit or larger modulus.
        return der.len() > 256 && der.first() == Some(&0x30);
    }
    match pkcs8::PrivateKeyInfo::try_from(der) {
        Ok(info) => info.algorithm.oid == ED25519 || info.algorithm.oid == RSA,
        Err(_) => false,
    }
}

/// Shannon entropy in bits per byte.
pub(crate) fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A regression test (found scanning compiled ccxt modules): ccxt's `bybit.py` names
    /// methods such as `createOrderWithTakeProfitAndStopLoss`, 36 letters, a Bybit
    /// secret's shape, beside an 18-letter one and the word `bybit`: a false positive in
    /// every project that vendors ccxt. Words in camel case are no key.
    #[test]
    fn method_names_in_camel_case_are_no_keys() {
        for name in [
            "createOrderWithTakeProfitAndStopLoss",
            "CancelAllOrdersAfterTimeout",
        ] {
            assert!(is_camel_case_words(name.as_bytes()), "{name}");
        }
        for key in [
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
            "XKqlPqQWNmHRNgVNRHtXzvNDAwzrEHaTuj",
            "abcdefghijklmnopqr",
            "cancelOrdersForSym",
            "createOrderWithTPAndSLPlease",
        ] {
            assert!(!is_camel_case_words(key.as_bytes()), "{key}");
        }
    }

    /// A regression test (found scanning ccxt): ccxt's `bybit.py` names the methods of
    /// Bybit's API after their paths, `privatePostV5AssetExchangeQuoteApply`, 36
    /// characters with a digit, a Bybit secret's shape; `abstract/bybit.py` has twenty
    /// such names, `abstract/coinbase.py` three (`v3PrivateGetBrokerageProductBook`).
    /// Version tags in camel case are words too. Random keys of the same alphabets and
    /// lengths, with digits wherever they fall, are not.
    #[test]
    fn method_names_with_version_tags_are_no_keys() {
        for name in [
            "privatePostV5AssetExchangeQuoteApply",
            "privateGetV5AssetDepositQueryAddress",
            "privateGetSpotV3PrivateHistoryOrders",
            "privateGetV2PrivateWalletFundRecords",
            "v3PrivateGetBrokerageProductBook",
            "publicGetApiV3ExchangeInfoForSymbolV12",
            // A pre-release version (found scanning ccxt's browser build: Alpaca's
            // `marketPublicGetV1beta3CryptoLocLatestTrades`, a Bitfinex key's shape).
            "marketPublicGetV1beta3CryptoLocLatestTrades",
            "privateGetV2alpha1AccountsActivities",
            // A duration (found scanning ccxt's `abstract/bybit.d.ts`).
            "publicGetSpotV3PublicQuoteTicker24hr",
            "publicGetTicker24hAndKlines30dHistory",
        ] {
            assert!(is_camel_case_words(name.as_bytes()), "{name}");
        }
        for key in [
            // Random alphanumerics of a Bybit secret's and a Binance key's lengths.
            "m8Rk2QvTz9XbLp4NwYc7Hd1FsJg6Ae3UtKoW",
            "XKqlPqQWNmHRNgVNRHtXzvNDAwzrEHaTuj5V",
            "Fhs4lGae2qAi6VNjbJjebUAwXrIChb7mlf372UOICMwdKaNdNBGKtfdeUff2TTTT",
            // Words with a digit that is no version tag, or a tag in the wrong place.
            "privatePostV5assetExchangeQuoteApply",
            "privatePostV5betaAssetExchangeQuote",
            "privatePostV5beta123AssetExchangeQuo",
            "publicGetSpotV3PublicQuoteTicker24hrs",
            "publicGetSpotV3PublicQuoteTicker245h",
            "privatePostV123AssetExchangeQuoteApply",
            "privatePost5AssetExchangeQuoteApplyNow",
            "privatePostAssetExchangeQuoteApplyv5",
            "privatePostAssetExchangeQuoteApplyV5x",
        ] {
            assert!(!is_camel_case_words(key.as_bytes()), "{key}");
        }
    }

    /// The rule of [`is_camel_case_words`] as a grammar, one character class at a time:
    /// what of `[a-z]`, `[A-Z][a-z]` and a version tag (`V` or, first, `v`, then one or two
    /// digits, then a capital or the end) a prefix may be in, as a set of states, and the
    /// capitals so far (up to two).
    mod camel {
        /// Ready for the next word (a prefix of words; accepting).
        pub const WORD: u8 = 1;
        /// After a capital that starts a word: a small letter must follow.
        pub const CAPITAL: u8 = 2;
        /// After a tag's `V`: a digit must follow.
        pub const TAG: u8 = 4;
        /// After a tag's first digit (accepting).
        pub const DIGIT: u8 = 8;
        /// After a tag's second digit (accepting).
        pub const DIGITS: u8 = 16;
        pub const ACCEPTING: u8 = WORD | DIGIT | DIGITS;

        /// The states after `c` at `position`, from `states`; `tags`: whether version tags
        /// are words.
        pub fn step(states: u8, c: u8, position: usize, tags: bool) -> u8 {
            let capital = |c: u8| CAPITAL | if c == b'V' && tags { TAG } else { 0 };
            let mut out = 0;
            if states & WORD != 0 {
                if c.is_ascii_lowercase() {
                    out |= WORD;
                }
                if c == b'v' && position == 0 && tags {
                    out |= TAG;
                }
            }
            if states & (WORD | DIGIT | DIGITS) != 0 && c.is_ascii_uppercase() {
                out |= capital(c);
            }
            if states & CAPITAL != 0 && c.is_ascii_lowercase() {
                out |= WORD;
            }
            if states & TAG != 0 && c.is_ascii_digit() {
                out |= DIGIT;
            }
            if states & DIGIT != 0 && c.is_ascii_digit() {
                out |= DIGITS;
            }
            out
        }

        /// Whether the grammar takes `token` (and its length and capitals pass).
        pub fn takes(token: &[u8]) -> bool {
            let mut states = WORD;
            for (i, &c) in token.iter().enumerate() {
                states = step(states, c, i, true);
            }
            let capitals = token.iter().filter(|c| c.is_ascii_uppercase()).count();
            states & ACCEPTING != 0 && capitals >= 2 && token.len() >= 24
        }

        /// The share of the strings of `len` letters and digits that the grammar takes
        /// (the length floor aside), counted by character class: small letters but `v`,
        /// `v`, capitals but `V`, `V`, digits.
        pub fn odds(len: usize, tags: bool) -> f64 {
            const CLASSES: [(u8, f64); 5] = [
                (b'a', 25.0),
                (b'v', 1.0),
                (b'B', 25.0),
                (b'V', 1.0),
                (b'0', 10.0),
            ];
            // Probability by (states, capitals up to two).
            let mut now = std::collections::HashMap::from([((WORD, 0usize), 1.0f64)]);
            for position in 0..len {
                let mut next = std::collections::HashMap::new();
                for (&(states, capitals), &p) in &now {
                    for (c, weight) in CLASSES {
                        let states = step(states, c, position, tags);
                        if states != 0 {
                            let capitals = (capitals + usize::from(c.is_ascii_uppercase())).min(2);
                            *next.entry((states, capitals)).or_insert(0.0) += p * weight / 62.0;
                        }
                    }
                }
                now = next;
            }
            now.iter()
                .filter(|&(&(states, capitals), _)| states & ACCEPTING != 0 && capitals == 2)
                .map(|(_, p)| p)
                .sum()
        }
    }

    /// The odds [`is_camel_case_words`]' comment states are those of its grammar.
    #[test]
    fn camel_case_odds_are_as_documented() {
        let once_in = |len, tags| 1.0 / camel::odds(len, tags);
        let near = |got: f64, want: f64, within: f64| (got / want - 1.0).abs() <= within;
        for (len, want, within) in [
            (18, 1_500.0, 0.05),
            (24, 14_500.0, 0.01),
            (32, 300_000.0, 0.1),
            (36, 1_500_000.0, 0.05),
        ] {
            let got = once_in(len, true);
            assert!(near(got, want, within), "{len}: once in {got}");
        }
        let got = once_in(24, false);
        assert!(near(got, 15_200.0, 0.01), "24 without tags: once in {got}");
    }

    /// A regression test (found by review): random keys, at odds of one in fifteen
    /// thousand, could not tell a looser rule from this one. [`is_camel_case_words`] takes
    /// exactly what its grammar takes, for every string of small letters around seven
    /// characters of every class (a small letter, `v`, a capital, `V`, a digit, another
    /// byte) at the start, in the middle and at the end, at 24 characters, and nothing at
    /// 23.
    #[test]
    fn camel_case_words_are_exactly_the_grammar() {
        const CLASSES: [u8; 6] = [b'a', b'v', b'B', b'V', b'0', b'_'];
        let mut taken = 0;
        for (before, after) in [(0, 17), (8, 9), (17, 0), (0, 16), (16, 0)] {
            for mut n in 0..CLASSES.len().pow(7) {
                let mut token = vec![b'x'; before];
                for _ in 0..7 {
                    token.push(CLASSES[n % CLASSES.len()]);
                    n /= CLASSES.len();
                }
                token.resize(before + 7 + after, b'x');
                let want = camel::takes(&token);
                taken += usize::from(want);
                assert_eq!(
                    is_camel_case_words(&token),
                    want,
                    "{}",
                    String::from_utf8_lossy(&token)
                );
            }
        }
        assert!(taken > 100, "{taken}");
    }

    #[test]
    fn builtin_rules_load() {
        let set = RuleSet::from_toml(BUILTIN_RULE_FILES).unwrap();
        assert_eq!(set.exchanges().len(), 8);
        assert!(set.rules().len() >= 20);
    }

    #[test]
    fn requires_must_name_another_part_of_the_same_exchange() {
        let file = |requires: &str| {
            format!(
                "exchange = \"x\"\ndisplay = \"X\"\nkeywords = [\"x\"]\nfix = \"f\"\n\
                 documentation_examples = []\n\
                 [[rules]]\nid = \"x.key\"\ndescription = \"d\"\nrole = \"key\"\n\
                 shape = \"[a-z]{{8}}\"\nlabel = \"none\"\nrequires = [{requires}]\n\
                 examples = []\nnegative_examples = []\n\
                 [[rules]]\nid = \"x.secret\"\ndescription = \"d\"\nrole = \"secret\"\n\
                 shape = \"[a-z]{{9}}\"\nlabel = \"none\"\n\
                 examples = []\nnegative_examples = []\n"
            )
        };
        let ok = file("\"x.secret\"");
        let set = RuleSet::from_toml(&[("x.toml", &ok)]).unwrap();
        assert_eq!(set.rule("x.key").unwrap().requires, vec![1]);
        for bad in ["\"x.nope\"", "\"x.key\"", "\"kraken.private-key\""] {
            let text = file(bad);
            let err = RuleSet::from_toml(&[("x.toml", &text)]).unwrap_err();
            assert!(err.to_string().contains("x.toml"), "{bad}: {err}");
        }
    }

    #[test]
    fn shape_lengths_come_from_the_regex() {
        let set = RuleSet::builtin();
        let r = set.rule("binance.hmac").unwrap();
        assert_eq!((r.min_len, r.max_len), (64, 64));
    }
}
