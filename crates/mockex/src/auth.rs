//! Binance request authentication: parameter parsing, timestamp window and signature checks.
//!
//! This is written independently of the gateway's signer on purpose: the simulator is the
//! second opinion that cross-checks it.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::routes::ApiError;
use crate::{Credential, Error, Restrictions};

/// One API key the simulator takes: how it proves a request, what it may do, and whose
/// account it acts on.
pub(crate) struct Key {
    pub(crate) material: KeyMaterial,
    pub(crate) restrictions: Restrictions,
    pub(crate) account: AccountId,
}

/// The account a key acts on: balances, orders, trades, withdrawals, transfers and
/// positions, and what Binance counts per account (the unfilled order count, UID
/// weight).
///
/// An enum rather than the name alone, so that a key without an account and an account
/// named like that key are never taken for one another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AccountId {
    /// An account named in credentials (`"account": NAME`), shared by every key naming it.
    Named(String),
    /// The account of a key that names none, its own alone; holds the API key.
    Own(String),
}

impl Key {
    /// Turns a credential into a key, rejecting an unusable one, restrictions no Binance
    /// key can have, and an empty account name.
    pub(crate) fn from_credential(credential: &Credential) -> Result<Key, Error> {
        let material = KeyMaterial::from_credential(credential)?;
        let invalid = |reason| Error::InvalidCredential {
            api_key: credential.api_key.clone(),
            reason,
        };
        if let Some(reason) = credential.restrictions.impossible() {
            return Err(invalid(reason));
        }
        let account = match &credential.account {
            None => AccountId::Own(credential.api_key.clone()),
            Some(name) if name.is_empty() => return Err(invalid("empty account name")),
            Some(name) => AccountId::Named(name.clone()),
        };
        Ok(Key {
            material,
            restrictions: credential.restrictions,
            account,
        })
    }
}

/// How one API key proves a request.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    /// HMAC-SHA256 with the raw ASCII secret; signature is hex.
    Hmac(Zeroizing<Vec<u8>>),
    /// Ed25519 public key; signature is base64 (percent-encoded on the wire).
    Ed25519(VerifyingKey),
}

impl KeyMaterial {
    /// Turns a credential into verification material, rejecting unusable ones.
    pub(crate) fn from_credential(credential: &Credential) -> Result<KeyMaterial, Error> {
        let invalid = |reason: &'static str| Error::InvalidCredential {
            api_key: credential.api_key.clone(),
            reason,
        };
        if credential.api_key.is_empty() {
            return Err(invalid("empty api key"));
        }
        if let Some(public) = &credential.ed25519_public_key {
            return parse_ed25519_public_key(public)
                .map(KeyMaterial::Ed25519)
                .ok_or_else(|| {
                    invalid("ed25519 public key is neither base64 of 32 bytes nor a PEM public key")
                });
        }
        match &credential.secret {
            Some(secret) if !secret.is_empty() => Ok(KeyMaterial::Hmac(Zeroizing::new(
                secret.as_bytes().to_vec(),
            ))),
            _ => Err(invalid("neither secret nor ed25519 public key given")),
        }
    }

    /// Checks `signature` (the raw value as sent, still form-encoded) over `payload`.
    pub(crate) fn verify(&self, payload: &[u8], raw_signature: &str) -> bool {
        match self {
            KeyMaterial::Hmac(secret) => {
                // Binance reads every parameter percent-decoded, the signature too: hex
                // sent as `%61%62…` is the same signature.
                let Ok(given) = hex::decode(decode_component(raw_signature)) else {
                    return false;
                };
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(payload);
                let expected = mac.finalize().into_bytes();
                expected.as_slice().ct_eq(&given).into()
            }
            KeyMaterial::Ed25519(key) => {
                // Decoded as every parameter is: a `+` is a space, then percent-escapes.
                // Binance asks for base64, then percent-encoded; sent without the
                // percent-encoding, a signature that holds a `+` fails.
                let decoded = decode_component(raw_signature);
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(decoded) else {
                    return false;
                };
                let Ok(signature) = Signature::from_slice(&bytes) else {
                    return false;
                };
                key.verify_strict(payload, &signature).is_ok()
            }
        }
    }
}

/// Parses base64 of the 32 raw bytes, or an SPKI PEM `PUBLIC KEY`.
fn parse_ed25519_public_key(text: &str) -> Option<VerifyingKey> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).ok();
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let raw: [u8; 32] = raw.try_into().ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

/// The parameters of one request, from the query string and the form body.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: BTreeMap<String, String>,
    /// Raw query string as received, minus the `signature` pair.
    signed_query: String,
    /// Raw form body as received, minus the `signature` pair.
    signed_body: String,
    /// Raw `signature` value (not percent-decoded).
    raw_signature: Option<String>,
    /// Whether a parameter follows a `signature` in its part.
    is_signature_followed: bool,
}

impl Params {
    /// Parses the raw query and form body as Binance does: a name repeated within the query,
    /// or within the body, is -1101; a name in both takes its value from the query ("If a
    /// parameter sent in both the query string and request body, the query string
    /// parameter will be used", NOTES §1.1). An empty segment (`a=1&&b=2`) holds no
    /// parameter.
    ///
    /// `signature` follows the same rule, since Binance documents no exception for it: twice
    /// in one part is -1101, and in both parts the query's value is the one checked.
    ///
    /// The signed payload is each part exactly as received with only its `signature` pair
    /// cut out, the `&` before it with it (the one after, when it comes first): Binance
    /// verifies the bytes it received, so a signature over a tidied form of an irregular
    /// query (an empty segment dropped, a trailing `&` trimmed) does not verify.
    pub(crate) fn parse(query: &str, body: &str) -> Result<Params, ApiError> {
        let mut params = Params::default();
        let mut parts = [String::new(), String::new()];
        // The query comes first, so a value it holds is never replaced by the body's.
        for (index, raw) in [query, body].into_iter().enumerate() {
            let mut seen: HashSet<String> = HashSet::new();
            // Byte range of this part's `signature` segment.
            let mut signature_at: Option<(usize, usize)> = None;
            let mut start = 0;
            for segment in raw.split('&') {
                let at = (start, start + segment.len());
                start = at.1 + 1;
                if segment.is_empty() {
                    continue;
                }
                let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
                let name = decode_component(name);
                if !seen.insert(name.clone()) {
                    return Err(ApiError::duplicate());
                }
                params.is_signature_followed |= signature_at.is_some();
                if name == "signature" {
                    params.raw_signature.get_or_insert_with(|| value.to_owned());
                    signature_at = Some(at);
                } else {
                    params
                        .values
                        .entry(name)
                        .or_insert_with(|| decode_component(value));
                }
            }
            parts[index] = match signature_at {
                None => raw.to_owned(),
                Some((from, to)) => {
                    // The pair and one `&` beside it: the one before, else the one after.
                    let (from, to) = if from > 0 {
                        (from - 1, to)
                    } else {
                        (from, (to + 1).min(raw.len()))
                    };
                    format!("{}{}", &raw[..from], &raw[to..])
                }
            };
        }
        let [signed_query, signed_body] = parts;
        params.signed_query = signed_query;
        params.signed_body = signed_body;
        Ok(params)
    }

    /// Parameters given as decoded names and values, as one order of a batch gives them
    /// (nothing signed: the batch around them was).
    pub(crate) fn from_values(values: BTreeMap<String, String>) -> Params {
        Params {
            values,
            ..Params::default()
        }
    }

    /// How many parameters were sent, `signature` included; a name in both the query and
    /// the body counts once.
    pub(crate) fn count(&self) -> usize {
        self.values.len() + usize::from(self.raw_signature.is_some())
    }

    /// The decoded names sent, `signature` aside.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The decoded value of `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The decoded value of `name`, or -1102.
    pub(crate) fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(ApiError::mandatory(name)),
        }
    }

    /// A decimal parameter. Binance takes `^([0-9]{1,20})(\.[0-9]{1,20})?$` and nothing
    /// else (no sign, exponent, separator, whitespace, or bare leading or trailing dot):
    /// anything else is -1100. A value the pattern allows but the simulator cannot hold
    /// exactly (more than 28 significant digits, so at least 9 decimals: more than any
    /// simulated asset's precision) is -1111, as Binance answers too much precision.
    pub(crate) fn decimal(&self, name: &str) -> Result<Option<Decimal>, ApiError> {
        const PATTERN: &str = "^([0-9]{1,20})(\\.[0-9]{1,20})?$";
        let Some(value) = self.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let (whole, fraction) = match value.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (value, None),
        };
        if !is_digits(whole) || !fraction.is_none_or(is_digits) {
            return Err(ApiError::illegal_chars(name, PATTERN));
        }
        Decimal::from_str_exact(value)
            .map(Some)
            .map_err(|_| ApiError::too_much_precision(name))
    }

    /// An integer parameter. Binance takes `^[0-9]{1,20}$` and nothing else: anything else
    /// is -1100. Twenty digits can exceed what the simulator holds (`u64`); such a value is
    /// -1108, Binance's "Parameter '%s' overflowed.".
    pub(crate) fn integer(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if !is_digits(value) {
            return Err(ApiError::illegal_chars(name, "^[0-9]{1,20}$"));
        }
        value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::overflow(name))
    }

    /// The signed payload: raw query ‖ raw body, without separator and without `signature`.
    pub(crate) fn payload(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.signed_query.len() + self.signed_body.len());
        payload.extend_from_slice(self.signed_query.as_bytes());
        payload.extend_from_slice(self.signed_body.as_bytes());
        payload
    }

    /// The raw signature value, if one was sent.
    pub(crate) fn raw_signature(&self) -> Option<&str> {
        self.raw_signature.as_deref()
    }

    /// Whether every `signature` is the last parameter of its part, as Binance asks ("make
    /// sure the `signature` is the end part of your query string or request body").
    pub(crate) fn is_signature_last(&self) -> bool {
        !self.is_signature_followed
    }
}

/// Whether `text` is 1 to 20 ASCII digits, as Binance's number patterns require.
fn is_digits(text: &str) -> bool {
    (1..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Percent-decodes one form component (`+` is a space, as in `application/x-www-form-urlencoded`).
fn decode_component(raw: &str) -> String {
    form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// Applies Binance's timing rule to `timestamp` and `recvWindow`.
///
/// `allow_micros` is true for spot (`/api`, `/sapi`), which accepts microsecond timestamps
/// and a `recvWindow` of up to three decimals (microseconds), more being -1111; USD-M
/// (`/fapi`) takes both as whole milliseconds only (a LONG), a fraction being -1100.
pub(crate) fn check_timestamp(
    params: &Params,
    server_time_ms: u64,
    allow_micros: bool,
) -> Result<(), ApiError> {
    let timestamp = params
        .integer("timestamp")?
        .ok_or_else(|| ApiError::mandatory("timestamp"))?;
    // A millisecond timestamp has 13 digits until the year 2286; 16 digits means microseconds.
    let timestamp = if allow_micros && timestamp >= 1_000_000_000_000_000 {
        Decimal::from(timestamp) / Decimal::from(1000)
    } else {
        Decimal::from(timestamp)
    };
    let recv_window = if allow_micros {
        let window = params.decimal("recvWindow")?;
        if window.is_some_and(|w| w.normalize().scale() > 3) {
            return Err(ApiError::too_much_precision("recvWindow"));
        }
        window
    } else {
        params.integer("recvWindow")?.map(Decimal::from)
    }
    .unwrap_or_else(|| Decimal::from(5000));
    if recv_window > Decimal::from(60_000) || recv_window.is_sign_negative() {
        return Err(ApiError::new(
            400,
            -1131,
            "recvWindow must be less than 60000",
        ));
    }
    let server = Decimal::from(server_time_ms);
    if timestamp < server + Decimal::from(1000) && server - timestamp <= recv_window {
        Ok(())
    } else if timestamp >= server + Decimal::from(1000) {
        Err(ApiError::new(
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ))
    } else {
        Err(ApiError::new(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests may panic.
mod tests {
    use super::*;

    #[test]
    fn a_name_repeated_within_one_part_is_1101() {
        for (query, body) in [
            ("a=1&a=1", ""),
            ("a=1&a=2", ""),
            ("", "a=1&b=2&a=3"),
            ("signature=aa&signature=aa", ""),
            ("", "signature=aa&x=1&signature=bb"),
            // Names compare decoded: `%61` is `a`.
            ("a=1&%61=2", ""),
        ] {
            let err = Params::parse(query, body).unwrap_err();
            assert_eq!(err.code, -1101, "{query:?} {body:?}");
        }
    }

    #[test]
    fn a_name_in_query_and_body_takes_the_query_value() {
        let params =
            Params::parse("symbol=BTCUSDT&timestamp=1", "symbol=ETHUSDT&quantity=1").unwrap();
        assert_eq!(params.get("symbol"), Some("BTCUSDT"));
        assert_eq!(params.get("quantity"), Some("1"));
        // The payload is still both parts exactly as received, the body's symbol included.
        assert_eq!(
            params.payload(),
            b"symbol=BTCUSDT&timestamp=1symbol=ETHUSDT&quantity=1"
        );
        // An empty query value wins too, and is then missing (-1102), not the body's.
        let params = Params::parse("symbol=", "symbol=ETHUSDT").unwrap();
        assert_eq!(params.required("symbol").unwrap_err().code, -1102);
    }

    #[test]
    fn a_signature_in_query_and_body_is_taken_from_the_query() {
        let params = Params::parse("a=1&signature=aa", "b=2&signature=bb").unwrap();
        assert_eq!(params.raw_signature(), Some("aa"));
        assert_eq!(params.payload(), b"a=1b=2");
        let params = Params::parse("a=1", "b=2&signature=bb").unwrap();
        assert_eq!(params.raw_signature(), Some("bb"));
        assert_eq!(params.get("signature"), None);
    }

    #[test]
    fn payload_strips_signature_and_keeps_raw_bytes() {
        let params =
            Params::parse("symbol=%41BC&signature=ab&timestamp=1", "quantity=1+2").unwrap();
        assert_eq!(params.payload(), b"symbol=%41BC&timestamp=1quantity=1+2");
        assert_eq!(params.get("symbol"), Some("ABC"));
        assert_eq!(params.get("quantity"), Some("1 2"));
        assert_eq!(params.raw_signature(), Some("ab"));
    }

    /// Regression: the signed payload was rebuilt from the parsed pairs
    /// (`kept.join("&")`), so an empty segment or a trailing `&` vanished from it and a
    /// signature over the tidied query verified. Binance verifies the bytes as received,
    /// with only the `signature` pair (and the `&` that joined it) taken out.
    #[test]
    fn the_payload_is_the_raw_bytes_minus_the_signature_pair() {
        for (query, body, payload) in [
            ("a=1&&b=2&signature=ff", "", "a=1&&b=2"),
            ("a=1&b=2&&signature=ff", "", "a=1&b=2&"),
            ("a=1&b=2&signature=ff&", "", "a=1&b=2&"),
            ("&a=1&signature=ff", "", "&a=1"),
            ("a=1&signature=ff&b=2", "", "a=1&b=2"),
            ("signature=ff&a=1", "", "a=1"),
            ("signature=ff", "", ""),
            ("a=1&&", "b=2&&signature=ff", "a=1&&b=2&"),
            ("a=1", "&b=2&signature=ff", "a=1&b=2"),
            ("a=1&%73ignature=ff", "", "a=1"),
        ] {
            let params = Params::parse(query, body).unwrap();
            assert_eq!(
                String::from_utf8(params.payload()).unwrap(),
                payload,
                "{query:?} {body:?}"
            );
            assert_eq!(params.raw_signature(), Some("ff"), "{query:?} {body:?}");
        }
        // Empty segments hold no parameter.
        let params = Params::parse("a=1&&b=2&", "").unwrap();
        assert_eq!((params.get("a"), params.get("b")), (Some("1"), Some("2")));
        assert_eq!(params.get(""), None);
    }

    /// Regression: `decimal` and `integer` parsed with rust_decimal and `u64`, taking what
    /// Binance refuses with -1100 (a sign, an exponent, `_`, a bare dot, whitespace, more
    /// than 20 digits on a side). Binance checks `^([0-9]{1,20})(\.[0-9]{1,20})?$` and
    /// `^[0-9]{1,20}$`, nothing more lenient.
    #[test]
    fn numbers_are_checked_against_binance_patterns_exactly() {
        let twenty = "12345678901234567890";
        let refused = [
            "+1".to_owned(),
            "-1".into(),
            "1e5".into(),
            "1E5".into(),
            "1_000".into(),
            ".5".into(),
            "1.".into(),
            ".".into(),
            " 1".into(),
            "1 ".into(),
            "1\t".into(),
            "0x10".into(),
            "1,5".into(),
            "1.2.3".into(),
            "NaN".into(),
            "inf".into(),
            "\u{ff11}".into(),
            format!("1{twenty}"),
            format!("1.1{twenty}"),
        ];
        for value in &refused {
            let params = Params {
                values: BTreeMap::from([("n".to_owned(), value.clone())]),
                ..Params::default()
            };
            let err = params.decimal("n").unwrap_err();
            assert_eq!(err.code, -1100, "decimal {value:?}");
            assert!(
                err.msg.contains("'^([0-9]{1,20})(\\.[0-9]{1,20})?$'"),
                "{}",
                err.msg
            );
            let err = params.integer("n").unwrap_err();
            assert_eq!(err.code, -1100, "integer {value:?}");
            assert!(err.msg.contains("'^[0-9]{1,20}$'"), "{}", err.msg);
        }
        let read = |value: &str| Params {
            values: BTreeMap::from([("n".to_owned(), value.to_owned())]),
            ..Params::default()
        };
        for (value, expected) in [
            ("0", "0"),
            ("007", "7"),
            ("1.5", "1.5"),
            ("0.00000001", "0.00000001"),
            (twenty, twenty),
            ("1.12345678901234567890", "1.12345678901234567890"),
        ] {
            let got = read(value).decimal("n").unwrap().unwrap();
            assert_eq!(got, expected.parse::<Decimal>().unwrap(), "{value:?}");
        }
        assert_eq!(read("1.5").integer("n").unwrap_err().code, -1100);
        assert_eq!(
            read(twenty).integer("n").unwrap(),
            Some(12_345_678_901_234_567_890)
        );
        assert_eq!(read("007").integer("n").unwrap(), Some(7));
        // Legal, but past what the simulator holds: too much precision, or an overflow.
        let wide = format!("{twenty}.{twenty}");
        assert_eq!(read(&wide).decimal("n").unwrap_err().code, -1111);
        assert_eq!(
            read("99999999999999999999").integer("n").unwrap_err().code,
            -1108
        );
        // Absent or empty: no value.
        assert_eq!(read("").decimal("n").unwrap(), None);
        assert_eq!(Params::default().integer("n").unwrap(), None);
    }

    #[test]
    fn timestamp_window() {
        let params = Params::parse("timestamp=10000&recvWindow=5000", "").unwrap();
        assert!(check_timestamp(&params, 15_000, false).is_ok());
        assert_eq!(
            check_timestamp(&params, 15_001, false).unwrap_err().code,
            -1021
        );
        assert_eq!(
            check_timestamp(&params, 9_000, false).unwrap_err().code,
            -1021
        );
        assert!(check_timestamp(&params, 9_001, false).is_ok());
        let params = Params::parse("timestamp=10000&recvWindow=60001", "").unwrap();
        assert_eq!(
            check_timestamp(&params, 10_000, false).unwrap_err().code,
            -1131
        );
    }

    #[test]
    fn hmac_signature_is_case_insensitive() {
        let key = KeyMaterial::Hmac(Zeroizing::new(
            b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j".to_vec(),
        ));
        let payload = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        assert!(key.verify(payload, sig));
        assert!(key.verify(payload, &sig.to_uppercase()));
        assert!(!key.verify(&payload[1..], sig));
    }

    #[test]
    fn ed25519_public_key_as_base64_or_pem() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        use ed25519_dalek::Signer as _;
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = signing
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().to_bytes());
        let signature = base64::engine::general_purpose::STANDARD
            .encode(signing.sign(b"timestamp=1").to_bytes());
        let encoded = signature
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        for text in [pem, b64] {
            let key = KeyMaterial::from_credential(&Credential::ed25519("k", text)).unwrap();
            assert!(key.verify(b"timestamp=1", &encoded));
            assert!(!key.verify(b"timestamp=2", &encoded));
        }
        assert!(KeyMaterial::from_credential(&Credential::ed25519("k", "AAAA")).is_err());
    }

    /// Regression: the simulator took an Ed25519 signature whose base64 was sent without
    /// percent-encoding. Binance decodes a `+` in a query or form as a space, so such a
    /// signature fails there whenever it holds a `+` (Binance asks for base64, then
    /// percent-encoded); it passes only with no `+` in it, as `/` and `=` decode to
    /// themselves.
    #[test]
    fn an_ed25519_signature_with_an_unencoded_plus_fails() {
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let key = KeyMaterial::Ed25519(signing.verifying_key());
        let sign = |payload: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(signing.sign(payload.as_bytes()).to_bytes())
        };
        let payload_with = |plus: bool| {
            (1..1000)
                .map(|n| format!("timestamp={n}"))
                .find(|p| sign(p).contains('+') == plus)
                .unwrap()
        };
        let payload = payload_with(true);
        let signature = sign(&payload);
        assert!(!key.verify(payload.as_bytes(), &signature), "{signature}");
        // The `+` sent as `%2B` passes, as on Binance; `+` as a space would not.
        assert!(key.verify(payload.as_bytes(), &signature.replace('+', "%2B")));
        let payload = payload_with(false);
        assert!(key.verify(payload.as_bytes(), &sign(&payload)));
    }
}
