//! A client's request: its parameters read as Binance reads them, its signature, what
//! it would do, and re-signing it with the real key.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use ed25519_dalek::{Signature, Verifier};
use hmac::{Hmac, Mac};
use keygate_core::{Action, ActionKind, Market, OrderRef, OrderTerms, Side};
use rust_decimal::Decimal;
use sha2::Sha256;

use super::answers::{is_algo_order_path, ALGO_ORDER_PATH};
use super::endpoints::{classify_endpoint, market, places_no_order, FAPI_ACCOUNT_SETTINGS};
use super::{API_KEY_HEADER, DEFAULT_RECV_WINDOW_MS, MAX_PARAMETERS, MAX_RECV_WINDOW_MS};
use crate::{ClientKey, ClientRequest, Error, Forward, Freshness};

/// A parameter name or value: a range of the raw text when it encodes nothing (symbols,
/// numbers, timestamps: nearly all of them), or its percent-decoded form.
#[derive(Clone, Debug)]
enum Text {
    Raw(Range<usize>),
    Decoded(String),
}

/// One parameter: where its raw `name=value` text is, and its decoded name and value.
#[derive(Clone, Debug)]
struct Param {
    raw: Range<usize>,
    name: Text,
    value: Text,
    in_body: bool,
}

/// A request's parameters, parsed once and used for verifying, classifying and forwarding,
/// so that all three see the same thing.
///
/// It keeps one copy of the raw query and body; parameters point into it.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    /// The raw query followed by the raw body.
    raw: String,
    params: Vec<Param>,
    signature: Option<Text>,
    signature_in_body: bool,
    payload: Vec<u8>,
}

impl SignedRequest {
    /// Parses the raw query (without `?`) and body.
    ///
    /// Refuses: bytes outside printable ASCII (Binance wants non-ASCII percent-encoded),
    /// empty or nameless parameters, a body that is not `application/x-www-form-urlencoded`,
    /// any name given twice (after percent-decoding, ignoring case; `signature` in another
    /// case counts, since a forwarded request always has one), a `signature` that is
    /// not the last parameter of its part, more than [`MAX_PARAMETERS`] parameters, and a
    /// price (`price`, `stopPrice`, `stopLimitPrice`, `workingPrice`…: any parameter an
    /// order's notional is priced by) that is not a positive decimal number.
    ///
    /// It runs before the API key is checked, so its cost is linear in the request's size.
    pub fn parse(
        query: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<SignedRequest, Error> {
        let body = if body.is_empty() {
            ""
        } else {
            let form = content_type
                .map(|ct| ct.split(';').next().unwrap_or("").trim())
                .is_some_and(|ct| ct.eq_ignore_ascii_case("application/x-www-form-urlencoded"));
            if !form {
                return Err(malformed(
                    "request body must be application/x-www-form-urlencoded",
                ));
            }
            std::str::from_utf8(body).map_err(|_| malformed("request body is not ASCII"))?
        };

        let mut raw = String::with_capacity(query.len() + body.len());
        raw.push_str(query);
        raw.push_str(body);
        let pair_count = query.split('&').count() + body.split('&').count();
        let mut params: Vec<Param> = Vec::with_capacity(pair_count.min(MAX_PARAMETERS));
        let mut signature = None;
        let mut signature_in_body = false;
        let mut payload = Vec::with_capacity(raw.len());
        for (part_start, part, in_body) in [(0, query, false), (query.len(), body, true)] {
            if part.is_empty() {
                continue;
            }
            if !part.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(malformed(
                    "illegal characters in parameters; percent-encode them",
                ));
            }
            // Binance splits parameters at `&` alone, as keygate does; some parsers split
            // at `;` too, and would read a parameter keygate never classified in what it
            // took for a value (found by review). No Binance value needs one raw.
            if part.contains(';') {
                return Err(malformed(
                    "a raw ';' in parameters is refused; percent-encode it as %3B",
                ));
            }
            let mut signed_len = part.len();
            let mut start = part_start;
            let mut pairs = part.split('&').peekable();
            while let Some(pair) = pairs.next() {
                let range = start..start + pair.len();
                start = range.end + 1;
                let (name, value) = decode_pair(pair, range.start)?;
                let name_text = text(&raw, &name);
                if name_text == "signature" {
                    if signature.is_some() {
                        return Err(Error::DuplicateParameter {
                            name: name_text.to_owned(),
                        });
                    }
                    if pairs.peek().is_some() {
                        return Err(malformed("signature must be the last parameter"));
                    }
                    // Everything before "&signature=..." (or nothing, if it stands alone).
                    let offset = range.start - part_start;
                    signed_len = offset.saturating_sub(1);
                    signature = Some(value);
                    signature_in_body = in_body;
                    continue;
                }
                // Bounded first: each name is compared with every earlier one, which is
                // the fastest way for the few dozen a request has, and with no bound let a
                // request of many short names cost seconds.
                if params.len() == MAX_PARAMETERS {
                    return Err(Error::TooManyParameters {
                        limit: MAX_PARAMETERS,
                    });
                }
                // Names that differ only in case count as duplicates too: keygate cannot
                // know whether the exchange folds case, so it refuses the ambiguity. That
                // includes `signature` in another case, signed or not: the request goes
                // to the exchange with a `signature`.
                if name_text.eq_ignore_ascii_case("signature")
                    || params
                        .iter()
                        .any(|p| text(&raw, &p.name).eq_ignore_ascii_case(name_text))
                {
                    return Err(Error::DuplicateParameter {
                        name: name_text.to_owned(),
                    });
                }
                check_parameter(name_text, text(&raw, &value))?;
                params.push(Param {
                    raw: range,
                    name,
                    value,
                    in_body,
                });
            }
            payload.extend_from_slice(&part.as_bytes()[..signed_len]);
        }
        Ok(SignedRequest {
            raw,
            params,
            signature,
            signature_in_body,
            payload,
        })
    }

    /// The decoded value of `name`, spelt exactly so (a name keygate reads, spelt in
    /// another case, was refused at parsing).
    pub fn param(&self, name: &str) -> Option<&str> {
        // Every name keygate reads must be one that parsing refuses in another case:
        // otherwise `ClosePosition=true` would be sent, unread, beside the quantity
        // keygate priced. Tests run every reading path with this check on.
        debug_assert_eq!(
            read_parameter_like(name),
            Some(name),
            "'{name}' is read but not refused in another case: list it"
        );
        self.params
            .iter()
            .find(|p| text(&self.raw, &p.name) == name)
            .map(|p| text(&self.raw, &p.value))
    }

    /// The name of an order list's leg type that is `MARKET` with a side not `SELL`
    /// (names and values in any case), if any: the legs' types and the sides they take
    /// (an OTOCO's pending above and below legs share `pendingSide`, an OCO's legs
    /// `side`).
    fn market_buy_leg(&self) -> Option<&'static str> {
        let named = |wanted: &str| {
            self.params()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value)
        };
        LIST_LEGS.into_iter().find_map(|(leg_type, leg_side)| {
            let market = named(leg_type).is_some_and(|t| t.eq_ignore_ascii_case("MARKET"));
            let sells = named(leg_side).is_some_and(|s| s.eq_ignore_ascii_case("SELL"));
            (market && !sells).then_some(leg_type)
        })
    }

    /// The parameters other than `signature`, decoded, in the order received.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .map(|p| (text(&self.raw, &p.name), text(&self.raw, &p.value)))
    }

    /// The bytes the client signed: raw query ‖ raw body, without the signature.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Whether the request carries a signature.
    pub fn is_signed(&self) -> bool {
        self.signature.is_some()
    }

    /// The decoded signature, if any. Identifies the request for replay detection.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_ref().map(|t| text(&self.raw, t))
    }

    /// Verifies the client's signature over [`SignedRequest::payload`], in constant time.
    pub fn verify(&self, key: ClientKey<'_>) -> Result<(), Error> {
        let signature = self
            .signature()
            .ok_or(Error::MissingParameter { name: "signature" })?;
        let valid = match key {
            ClientKey::Hmac(secret) => {
                let mut given = [0u8; 32];
                if hex::decode_to_slice(signature, &mut given).is_err() {
                    return Err(Error::BadSignature);
                }
                hmac_sha256(secret, &self.payload)
                    .verify_slice(&given)
                    .is_ok()
            }
            ClientKey::Ed25519(public) => {
                use base64::Engine as _;
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature) else {
                    return Err(Error::BadSignature);
                };
                let Ok(sig) = Signature::from_slice(&bytes) else {
                    return Err(Error::BadSignature);
                };
                public.verify_strict(&self.payload, &sig).is_ok()
                    && public.verify(&self.payload, &sig).is_ok()
            }
        };
        if valid {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }

    /// Checks `timestamp` and `recvWindow` against `now_ms` with Binance's rule:
    /// `timestamp < now + 1000` and `now - timestamp <= recvWindow`, and returns the
    /// timestamp in microseconds. `timestamp` may be in milliseconds or microseconds;
    /// `recvWindow` may have three decimals.
    pub fn check_freshness(&self, now_ms: u64) -> Result<Freshness, Error> {
        let raw = self
            .param("timestamp")
            .ok_or(Error::MissingParameter { name: "timestamp" })?;
        let ts: u64 = raw
            .parse()
            .map_err(|_| malformed("timestamp must be an integer"))?;
        // Thirteen digits are milliseconds until the year 2286; sixteen are microseconds.
        let ts_us = if ts >= 10_000_000_000_000 {
            ts
        } else {
            ts.saturating_mul(1000)
        };
        let window_us = match self.param("recvWindow") {
            None => DEFAULT_RECV_WINDOW_MS * 1000,
            Some(w) => {
                let w: Decimal = w
                    .parse()
                    .map_err(|_| malformed("recvWindow must be a number"))?;
                if w.is_sign_negative() || w.scale() > 3 {
                    return Err(malformed(
                        "recvWindow must be a positive number of milliseconds",
                    ));
                }
                if w > Decimal::from(MAX_RECV_WINDOW_MS) {
                    return Err(Error::RecvWindowTooLarge);
                }
                let us = (w * Decimal::from(1000)).trunc();
                u64::try_from(us).map_err(|_| malformed("recvWindow must be a number"))?
            }
        };
        let now_us = now_ms.saturating_mul(1000);
        let ahead_us = crate::MAX_TIMESTAMP_AHEAD_MS * 1000;
        // Told apart as Binance tells them (found by review: a clock ahead was told it
        // was behind).
        if ts_us >= now_us + ahead_us {
            Err(Error::TimestampAhead)
        } else if now_us.saturating_sub(ts_us) <= window_us {
            Ok(Freshness {
                signed_at_us: ts_us,
                valid_through_us: ts_us.saturating_add(window_us),
            })
        } else {
            Err(Error::StaleTimestamp)
        }
    }

    /// Rebuilds the request for the exchange: parameters in their places and order, the
    /// `timestamp` replaced by `timestamp_ms`, the real key's HMAC signature appended last
    /// to the part the client put its own in, and the real API key in its header.
    pub fn resign(&self, api_key: &str, secret: &[u8], timestamp_ms: u64) -> Forward {
        // The part the signature goes in gets room for the parameters as received, a
        // longer timestamp and the signature.
        let room = self.raw.len() + 96;
        let (query_room, body_room) = if self.signature_in_body {
            (0, room)
        } else {
            (room, 0)
        };
        let mut query = String::with_capacity(query_room);
        let mut body = String::with_capacity(body_room);
        for p in &self.params {
            let out = if p.in_body { &mut body } else { &mut query };
            if !out.is_empty() {
                out.push('&');
            }
            if text(&self.raw, &p.name) == "timestamp" {
                // Writing to a String cannot fail.
                let _ = write!(out, "timestamp={timestamp_ms}");
            } else {
                out.push_str(&self.raw[p.raw.clone()]);
            }
        }
        // Signed over the query followed by the body, as the exchange reads them.
        let mut mac = hmac_sha256(secret, query.as_bytes());
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let out = if self.signature_in_body {
            &mut body
        } else {
            &mut query
        };
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str("signature=");
        out.push_str(&signature);
        let mut headers = vec![(API_KEY_HEADER, api_key.to_owned())];
        if !body.is_empty() {
            headers.push((
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        Forward {
            query,
            body,
            headers,
        }
    }

    /// The orders of a batch sent with `method` (`POST`: new orders; `PUT`: modifications)
    /// to [`BATCH_ORDERS_PATH`], read strictly from its `batchOrders` parameter: a JSON
    /// list of 1 to [`MAX_BATCH_ORDERS`] objects whose values are strings, `true`/`false`,
    /// or numbers written as plain decimals. Each order must name its symbol and side, and
    /// its type when new (its quantity, its price and the order it modifies when a
    /// modification); each of its keys is held to what a parameter of a single order is
    /// held to ([`SignedRequest::parse`]), and none may appear twice in any case.
    /// Anything else is malformed: keygate does not guess what the exchange would make of
    /// it.
    pub fn batch(&self, method: &str) -> Result<Vec<BatchOrderParams>, Error> {
        let json = self
            .param(BATCH_ORDERS)
            .ok_or(Error::MissingParameter { name: BATCH_ORDERS })?;
        let orders: Vec<BatchOrderParams> = serde_json::from_str(json)
            .map_err(|_| malformed("batchOrders must be a JSON list of orders, each an object whose values are strings, booleans or plain decimal numbers"))?;
        if !(1..=MAX_BATCH_ORDERS).contains(&orders.len()) {
            return Err(Error::Malformed {
                reason: format!("batchOrders must list 1 to {MAX_BATCH_ORDERS} orders"),
            });
        }
        let required: &[&str] = match method {
            "POST" => &["symbol", "side", "type"],
            _ => &["symbol", "side", "quantity", "price"],
        };
        for (number, order) in (1..).zip(&orders) {
            let bad = |what: String| Error::Malformed {
                reason: format!("order {number} of batchOrders: {what}"),
            };
            if order.params.len() > MAX_PARAMETERS {
                return Err(bad(format!("more than {MAX_PARAMETERS} keys")));
            }
            let known: &[&str] = match method {
                "POST" => BATCH_NEW_ORDER_KEYS,
                _ => BATCH_MODIFY_ORDER_KEYS,
            };
            for (i, (name, value)) in order.params.iter().enumerate() {
                if order.params[..i]
                    .iter()
                    .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
                {
                    // Refused as a parameter given twice is (-1101), not as malformed.
                    return Err(Error::DuplicateParameter {
                        name: format!("{} (order {number} of batchOrders)", name.escape_debug()),
                    });
                }
                // Only the keys Binance documents, as it spells them: a key keygate
                // does not read could be read by the exchange (a reader that folds case
                // or ignores `_` would take `quan_tity` for `quantity`).
                if !known.contains(&name.as_str()) {
                    return Err(bad(format!(
                        "key '{}' is not one Binance takes in a batch",
                        name.escape_debug()
                    )));
                }
                check_parameter(name, value)
                    .and_then(|()| check_symbol_or_order_id(name, value, Market::Usdm))
                    .map_err(|e| match e {
                        Error::Malformed { reason } => bad(reason),
                        other => other,
                    })?;
            }
            if let Some(missing) = required
                .iter()
                .find(|name| order.param(name).is_none_or(str::is_empty))
            {
                return Err(bad(format!("no '{missing}'")));
            }
            if method != "POST"
                && order.param("orderId").is_none()
                && order.param("origClientOrderId").is_none()
            {
                return Err(bad("no 'orderId' or 'origClientOrderId'".to_owned()));
            }
            let side = order.param("side").unwrap_or_default();
            if !side.eq_ignore_ascii_case("BUY") && !side.eq_ignore_ascii_case("SELL") {
                return Err(bad("a side other than BUY or SELL".to_owned()));
            }
        }
        Ok(orders)
    }

    /// Checks what `method path` asks of the parameters beyond what every path asks:
    /// futures take a whole `recvWindow`, spot a decimal one; a batch of orders must read
    /// ([`SignedRequest::batch`]).
    pub fn check_for_path(&self, method: &str, path: &str) -> Result<(), Error> {
        let market = if path.starts_with("/api/") {
            Market::Spot
        } else {
            Market::Usdm
        };
        for (name, value) in self.params() {
            check_symbol_or_order_id(name, value, market)?;
        }
        // Spot reads up to three decimals of a millisecond; the other APIs an integer.
        let decimal = self.param("recvWindow").is_some_and(|w| w.contains('.'));
        if decimal && !path.starts_with("/api/") {
            return Err(malformed(
                "recvWindow must be a whole number of milliseconds outside spot",
            ));
        }
        // Spot (and `/sapi`) read a timestamp of sixteen digits as microseconds; futures
        // take milliseconds only, and refuse one as far in the future.
        let in_micros = self
            .param("timestamp")
            .is_some_and(|t| t.len() >= 16 && t.bytes().all(|b| b.is_ascii_digit()));
        if in_micros && !path.starts_with("/api/") && !path.starts_with("/sapi/") {
            return Err(malformed("timestamp must be in milliseconds outside spot"));
        }
        // An order's side decides how it is valued (a buy through the book, a sell in
        // quote units refused): one that reads as neither would be valued as neither, and
        // is refused rather than forwarded, as in a batch (found by review: `BUY%20`).
        if matches!(method, "POST" | "PUT") {
            let sides = ["side", "workingSide", "pendingSide"];
            for (name, value) in self.params().filter(|(name, _)| sides.contains(name)) {
                if !value.eq_ignore_ascii_case("BUY") && !value.eq_ignore_ascii_case("SELL") {
                    return Err(Error::Malformed {
                        reason: format!("'{name}' must be BUY or SELL"),
                    });
                }
            }
        }
        if is_batch_path(path) && matches!(method, "POST" | "PUT") {
            self.batch(method)?;
        }
        // A pegged leg of an order list (`workingPegPriceType`, `pendingAbovePeg…`) fills
        // at a price the exchange takes from the book, levels past its best if asked:
        // keygate prices a list's legs by the prices they name and the best price, and
        // walks the book for a pegged order on its own only. Refused, not priced short.
        let order_list =
            path.starts_with("/api/v3/order/oco") || path.starts_with("/api/v3/orderList/");
        if order_list {
            let pegged_leg = self.params().find(|(name, _)| {
                let name = name.to_ascii_lowercase();
                ["pegpricetype", "pegoffsettype", "pegoffsetvalue"]
                    .iter()
                    .any(|peg| name.ends_with(peg))
            });
            if let Some((name, _)) = pegged_leg {
                return Err(Error::Malformed {
                    reason: format!(
                        "pegged legs of order lists are not taken ('{name}'): peg an order on \
                         its own, or give the leg a price"
                    ),
                });
            }
            // So is a market buy leg (an OTO's or OPO's pending `MARKET` buy, which goes
            // once the working order fills, levels past the best ask if its quantity asks
            // for them), and one whose side is not said to be a sell (found by review).
            if let Some(leg_type) = self.market_buy_leg() {
                return Err(Error::Malformed {
                    reason: format!(
                        "market buy legs of order lists are not taken ('{leg_type}=MARKET'): \
                         buy at the market with an order on its own, or give the leg a price \
                         (LIMIT)"
                    ),
                });
            }
        }
        // A modification names what Binance requires of it, as each of a batch's must:
        // one without its price (or a `priceMatch`) would be priced from the market alone.
        if method == "PUT" && path == "/fapi/v1/order" {
            let named = |name| self.param(name).is_some_and(|v| !v.is_empty());
            if let Some(missing) = ["symbol", "side", "quantity"]
                .into_iter()
                .find(|name| !named(name))
            {
                return Err(Error::Malformed {
                    reason: format!("a modification names its '{missing}'"),
                });
            }
            if !named("price") && !named("priceMatch") {
                return Err(malformed(
                    "a modification names its 'price' or 'priceMatch'",
                ));
            }
            if !named("orderId") && !named("origClientOrderId") {
                return Err(malformed(
                    "a modification names its 'orderId' or 'origClientOrderId'",
                ));
            }
        }
        // A conditional order's cancel is checked by the symbol of the order a lookup
        // by the same ids finds: with both ids, which one Binance goes by is not
        // documented, and the lookup and the cancel could go by different orders.
        if method == "DELETE" && is_algo_order_path(path) {
            let named = |name| self.param(name).is_some_and(|v| !v.is_empty());
            if named("algoId") && named("clientAlgoId") {
                return Err(malformed(
                    "a cancel names its order by 'algoId' or by 'clientAlgoId', not both",
                ));
            }
        }
        Ok(())
    }

    /// What the request would do at `method path`. A batch whose orders do not read
    /// ([`SignedRequest::check_for_path`] refuses it) is [`ActionKind::Unknown`], which
    /// nothing allows.
    pub fn classify(&self, method: &str, path: &str) -> Action {
        let kind = classify_endpoint(method, path);
        let mut action = Action::new(kind, format!("{method} {path}"));
        let decimal = |name| self.param(name).and_then(|v| v.parse::<Decimal>().ok());
        match kind {
            // The orders of a batch are in a JSON list: each is described as the same
            // order sent on its own would be.
            ActionKind::Trade if is_batch_path(path) => match self.batch(method) {
                Ok(orders) => {
                    action.market = market(path);
                    action.batch = orders
                        .iter()
                        .map(|order| {
                            let mut a = Action::new(kind, format!("{method} {path}"));
                            describe_order(&mut a, method, path, |name| order.param(name));
                            a
                        })
                        .collect();
                }
                Err(_) => action.kind = ActionKind::Unknown,
            },
            ActionKind::Trade | ActionKind::Cancel | ActionKind::Read => {
                describe_order(&mut action, method, path, |name| self.param(name));
            }
            ActionKind::Withdraw => {
                action.asset = self.param("coin").map(str::to_ascii_uppercase);
                action.amount = decimal("amount");
                action.address = self.param("address").map(str::to_owned);
                action.network = self.param("network").map(str::to_owned);
                action.address_tag = self
                    .param("addressTag")
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_owned);
            }
            ActionKind::Transfer => {
                action.asset = self
                    .param("asset")
                    .or_else(|| self.param("coin"))
                    .map(str::to_ascii_uppercase);
                action.amount = decimal("amount");
                // A convert takes no `asset` or `amount` (a request naming them names a
                // decoy): it names what it gives (`fromAsset`, `fromAmount`) or gets
                // (`toAsset`, `toAmount`), or, as a limit order, its base or quote
                // (`baseAsset`, `baseAmount`; `quoteAsset`, `quoteAmount`). Accepting a
                // quote (`quoteId` alone) names neither.
                if path.contains("/convert/") {
                    let side =
                        |asset, amount| decimal(amount).map(|amount| (self.param(asset), amount));
                    // Each by the names its endpoint takes: the others are decoys too.
                    let named = if path.contains("/convert/limit/") {
                        side("baseAsset", "baseAmount")
                            .or_else(|| side("quoteAsset", "quoteAmount"))
                    } else {
                        side("fromAsset", "fromAmount").or_else(|| side("toAsset", "toAmount"))
                    };
                    action.asset = named
                        .as_ref()
                        .and_then(|(asset, _)| asset.map(str::to_ascii_uppercase));
                    action.amount = named.map(|(_, amount)| amount);
                    // A quote, and the list of open limit converts (a POST), ask and move
                    // nothing: they need the transfer scope, and tell of no money moved.
                    action.validates_only = path.ends_with("/convert/getQuote")
                        || path.ends_with("/convert/limit/queryOpenOrders");
                }
                // A sub-account transfer names the account it pays by its email (one that
                // names only where it takes from, `fromEmail`, pays the caller's own).
                action.address = self
                    .param("toEmail")
                    .filter(|email| !email.is_empty())
                    .map(str::to_owned);
            }
            ActionKind::Public | ActionKind::KeyManagement | ActionKind::Unknown => {}
        }
        action
    }
}

impl ClientRequest for SignedRequest {
    fn is_signed(&self) -> bool {
        SignedRequest::is_signed(self)
    }
    fn replay_id(&self) -> Option<Cow<'_, str>> {
        // Binance reads an HMAC signature's hex in either case, so one signature has many
        // spellings; the replay cache must see them as one.
        let signature = self.signature()?;
        let is_hex = signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit());
        Some(
            if is_hex && signature.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(signature.to_ascii_lowercase())
            } else {
                Cow::Borrowed(signature)
            },
        )
    }
    fn verify(&self, key: ClientKey<'_>) -> Result<(), Error> {
        SignedRequest::verify(self, key)
    }
    fn check_freshness(&self, now_ms: u64) -> Result<Freshness, Error> {
        SignedRequest::check_freshness(self, now_ms)
    }
    fn check_for_path(&self, method: &str, path: &str) -> Result<(), Error> {
        SignedRequest::check_for_path(self, method, path)
    }
    fn classify(&self, method: &str, path: &str) -> Action {
        SignedRequest::classify(self, method, path)
    }
    fn resign(&self, api_key: &str, secret: &[u8], timestamp_ms: u64) -> Forward {
        SignedRequest::resign(self, api_key, secret, timestamp_ms)
    }
    fn symbol_lookup(&self, method: &str, path: &str) -> Option<(&'static str, String)> {
        // "Cancel Algo Order" and "Query Algo Order" take `algoId` or `clientAlgoId`,
        // numbered account-wide, and no symbol. The lookup names the same ids, as sent.
        if !is_algo_order_path(path) || !matches!(method, "DELETE" | "GET") {
            return None;
        }
        let mut query = String::new();
        for p in &self.params {
            if matches!(text(&self.raw, &p.name), "algoId" | "clientAlgoId") {
                query.push_str(&self.raw[p.raw.clone()]);
                query.push('&');
            }
        }
        query.push_str("timestamp=0");
        Some((ALGO_ORDER_PATH, query))
    }
}

/// Refuses a parameter (of a request, or a key of one order of a batch) named `name`
/// whose value keygate would misread: a name keygate reads spelt in another case
/// (`PriceMatch`, `Network`, `AddressTag`), whichever the exchange then reads, would have
/// keygate decide on something else than what is executed; a price or quantity that does
/// not read, or one below zero, would be left out of the order's notional or lower it,
/// and the exchange might still read it.
fn check_parameter(name: &str, value: &str) -> Result<(), Error> {
    if let Some(known) = read_parameter_like(name).filter(|known| *known != name) {
        return Err(Error::Malformed {
            reason: format!(
                "parameter '{name}' is not '{known}': Binance's parameter names are spelt in \
                 one case"
            ),
        });
    }
    if (ORDER_PRICES.contains(&name)
        || BASE_QUANTITIES.contains(&name)
        || TRAILS.contains(&name)
        || name == QUOTE_QUANTITY
        || name == AMENDED_QUANTITY
        || name == MOVED_AMOUNT)
        && positive_decimal(value).is_none()
    {
        return Err(Error::Malformed {
            reason: format!("parameter '{name}' must be a positive decimal number"),
        });
    }
    Ok(())
}

/// Refuses a symbol or a client's order id that Binance would refuse (-1100) once keygate
/// had recorded the request as allowed: a bot's free text (`x;=HYPERLINK(…)`, a domain
/// name) then stood in the audit log, its CSV export, a `new_symbol` alert and every
/// reconciliation's list of symbols traded (found by review). Worded as Binance words it;
/// lower case and empty values are let through, for Binance to answer. Spot takes fewer
/// characters in a client's order id than the futures APIs (no `.`, `:` or `/`); every
/// other API is held to the futures' range, the wider one.
fn check_symbol_or_order_id(name: &str, value: &str, market: Market) -> Result<(), Error> {
    let (legal, range) = if name == "symbol" {
        (is_symbol_text(value), "^[A-Z0-9-_.]{1,20}$")
    } else if CLIENT_ORDER_IDS.contains(&name) && market == Market::Spot {
        (is_client_order_id(value, b""), "^[a-zA-Z0-9-_]{1,36}$")
    } else if CLIENT_ORDER_IDS.contains(&name) {
        (
            is_client_order_id(value, b".:/"),
            "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
        )
    } else {
        (true, "")
    };
    if value.is_empty() || legal {
        return Ok(());
    }
    Err(Error::Malformed {
        reason: format!(
            "Illegal characters found in parameter '{name}'; legal range is '{range}'."
        ),
    })
}

/// The parameters that name an order (or an order list, or a leg of one) by the client's
/// id for it, each held to Binance's `^[a-zA-Z0-9-_]{1,36}$` on spot and
/// `^[\.A-Z\:/a-z0-9_-]{1,36}$` on the futures APIs.
const CLIENT_ORDER_IDS: &[&str] = &[
    "newClientOrderId",
    "origClientOrderId",
    "clientAlgoId",
    "listClientOrderId",
    "cancelNewClientOrderId",
    "cancelOrigClientOrderId",
    "newOrderListClientOrderId",
    "aboveClientOrderId",
    "belowClientOrderId",
    "workingClientOrderId",
    "pendingClientOrderId",
    "pendingAboveClientOrderId",
    "pendingBelowClientOrderId",
    "limitClientOrderId",
    "stopClientOrderId",
];

/// Whether `value` is a symbol as Binance writes them (`BTCUSDT`, `BTCUSD_PERP`,
/// `BTC-250328-60000-C`), in either case.
pub(super) fn is_symbol_text(value: &str) -> bool {
    (1..=20).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The types of an order list's legs and the sides they take (an OTOCO's pending above
/// and below legs share `pendingSide`, an OCO's legs `side`).
const LIST_LEGS: [(&str, &str); 6] = [
    ("workingType", "workingSide"),
    ("pendingType", "pendingSide"),
    ("pendingAboveType", "pendingSide"),
    ("pendingBelowType", "pendingSide"),
    ("aboveType", "side"),
    ("belowType", "side"),
];

/// Whether an order placed at `path` with parameters `param` is, or holds as a leg of its
/// list, a buy that becomes a market buy when it triggers: a stop or take-profit without
/// a limit price (spot's `STOP_LOSS` and `TAKE_PROFIT`, USD-M's `STOP_MARKET`,
/// `TAKE_PROFIT_MARKET` and `TRAILING_STOP_MARKET`), on a side not said to be a sell; the
/// stop leg of a legacy OCO buy without `stopLimitPrice`, which is a `STOP_LOSS`; or a
/// pegged stop or take-profit buy (spot's `STOP_LOSS_LIMIT` and `TAKE_PROFIT_LIMIT` with
/// `pegPriceType`, USD-M's `STOP` and `TAKE_PROFIT` with `priceMatch`), whose limit the
/// exchange sets from the book when it triggers, up to twenty levels past the best
/// (found by review: valued at the best ask, it filled through the book as a stop-market
/// buy does).
fn market_buy_when_triggered<'a>(path: &str, param: &impl Fn(&str) -> Option<&'a str>) -> bool {
    const MARKET_WHEN_TRIGGERED: [&str; 5] = [
        "STOP_LOSS",
        "TAKE_PROFIT",
        "STOP_MARKET",
        "TAKE_PROFIT_MARKET",
        "TRAILING_STOP_MARKET",
    ];
    let sells = |side| param(side).is_some_and(|s| s.eq_ignore_ascii_case("SELL"));
    // An order on its own (`type`, `side`), or one of its list's legs.
    let legs = std::iter::once(("type", "side")).chain(LIST_LEGS);
    let typed = legs.into_iter().any(|(leg_type, leg_side)| {
        param(leg_type).is_some_and(|t| {
            MARKET_WHEN_TRIGGERED
                .iter()
                .any(|m| m.eq_ignore_ascii_case(t))
        }) && !sells(leg_side)
    });
    let legacy_oco_stop = path.starts_with("/api/v3/order/oco")
        && !sells("side")
        && param("stopPrice").is_some()
        && param("stopLimitPrice").is_none();
    const LIMIT_WHEN_TRIGGERED: [&str; 4] = [
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT_LIMIT",
        "STOP",
        "TAKE_PROFIT",
    ];
    let pegged_stop = param("type").is_some_and(|t| {
        LIMIT_WHEN_TRIGGERED
            .iter()
            .any(|l| l.eq_ignore_ascii_case(t))
    }) && is_pegged(param)
        && !sells("side");
    typed || legacy_oco_stop || pegged_stop
}

/// Whether an order is pegged (spot's `pegPriceType`, USD-M's `priceMatch`): it fills at a
/// price the exchange sets from the book, and its `price` bounds nothing.
fn is_pegged<'a>(param: &impl Fn(&str) -> Option<&'a str>) -> bool {
    PEG_PARAMETERS.iter().any(|name| param(name).is_some())
        || param("priceMatch").is_some_and(|m| !m.eq_ignore_ascii_case("NONE"))
}

/// Whether `value` is a client's order id as Binance takes them: 1 to 36 letters, digits,
/// `_` and `-`, and the bytes of `also`.
fn is_client_order_id(value: &str, also: &[u8]) -> bool {
    (1..=36).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || also.contains(&b))
}

/// Where USD-M orders are placed, modified and cancelled in batches.
pub const BATCH_ORDERS_PATH: &str = "/fapi/v1/batchOrders";

/// The keys an order of `POST /fapi/v1/batchOrders` may have, as Binance documents them.
pub(super) const BATCH_NEW_ORDER_KEYS: &[&str] = &[
    "symbol",
    "side",
    "positionSide",
    "type",
    "timeInForce",
    "quantity",
    "reduceOnly",
    "price",
    "newClientOrderId",
    "stopPrice",
    "activationPrice",
    "callbackRate",
    "workingType",
    "priceProtect",
    "newOrderRespType",
    "priceMatch",
    "selfTradePreventionMode",
    "goodTillDate",
];

/// The keys an order of `PUT /fapi/v1/batchOrders` (a modification) may have.
pub(super) const BATCH_MODIFY_ORDER_KEYS: &[&str] = &[
    "orderId",
    "origClientOrderId",
    "symbol",
    "side",
    "quantity",
    "price",
    "priceMatch",
];

/// The parameter that lists a batch's orders, as JSON.
pub(super) const BATCH_ORDERS: &str = "batchOrders";

/// The most orders Binance takes in one batch.
pub const MAX_BATCH_ORDERS: usize = 5;

/// Whether `path` is [`BATCH_ORDERS_PATH`].
fn is_batch_path(path: &str) -> bool {
    path == BATCH_ORDERS_PATH
}

/// One order of a batch: its keys and values as sent, in their order, values as text
/// (`true`/`false` for booleans, a number as its digits). Read by
/// [`SignedRequest::batch`], which refuses what does not read unambiguously.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOrderParams {
    pub(super) params: Vec<(String, String)>,
}

impl BatchOrderParams {
    /// The value of key `name`, spelt exactly so.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for BatchOrderParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BatchOrderParams;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an order: an object of strings, booleans and decimal numbers")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<BatchOrderParams, M::Error> {
                use serde::de::Error as _;
                // Every key is kept, duplicates too: [`SignedRequest::batch`] refuses them.
                let mut params = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if params.len() > MAX_PARAMETERS {
                        return Err(M::Error::custom("too many keys"));
                    }
                    let raw: &serde_json::value::RawValue = map.next_value()?;
                    let value = batch_value(raw.get())
                        .ok_or_else(|| M::Error::custom("a value keygate does not read"))?;
                    params.push((key, value));
                }
                Ok(BatchOrderParams { params })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A value of a batch's order, as text: a string's own, `true` or `false`, or a number
/// written as digits with at most one decimal point. `None` for anything else (`null`,
/// lists, objects, signs, exponents), which the exchange might read otherwise than
/// keygate.
fn batch_value(raw: &str) -> Option<String> {
    match raw {
        "true" | "false" => Some(raw.to_owned()),
        _ if raw.starts_with('"') => serde_json::from_str(raw).ok(),
        _ => {
            let (whole, fraction) = raw.split_once('.').unwrap_or((raw, "0"));
            let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            (digits(whole) && digits(fraction)).then(|| raw.to_owned())
        }
    }
}

/// Describes one order, or a symbol-scoped cancel or read, into `action` (of its kind, at
/// `method path`) from its parameters as `param` gives them: a request's own, or those of
/// one order of a batch. One description for both, so that an order in a batch is
/// decided as the same order sent alone.
fn describe_order<'a>(
    action: &mut Action,
    method: &str,
    path: &str,
    param: impl Fn(&str) -> Option<&'a str>,
) {
    let kind = action.kind;
    let decimal = |name| param(name).and_then(|v| v.parse::<Decimal>().ok());
    action.symbol = param("symbol").map(str::to_ascii_uppercase);
    action.market = market(path);
    action.side = match param("side") {
        Some(s) if s.eq_ignore_ascii_case("BUY") => Some(Side::Buy),
        Some(s) if s.eq_ignore_ascii_case("SELL") => Some(Side::Sell),
        _ => None,
    };
    // A modification (PUT) keeps its order's type, whatever `type` it names: it is priced
    // as an order of no stated type, from the market.
    action.order_type = param("type")
        .filter(|_| method != "PUT")
        .map(str::to_ascii_uppercase);
    action.market_buy_when_triggered = method == "POST" && market_buy_when_triggered(path, &param);
    if kind == ActionKind::Trade {
        action.places_no_order = places_no_order(method, path);
        action.validates_only = path.ends_with("/order/test");
        // A setting of the whole account names no symbol, whatever `symbol`
        // the request adds: a client held to a symbol list may not change it.
        if FAPI_ACCOUNT_SETTINGS.iter().any(|s| path.ends_with(s)) {
            action.symbol = None;
        }
        // A conditional (algo) order's id is `clientAlgoId`.
        let name = if is_algo_order_path(path) {
            "clientAlgoId"
        } else {
            "newClientOrderId"
        };
        action.client_order_id = param(name).map(str::to_owned);
    }
    // An order list's legs name their own quantities (OTO, OTOCO, OPO,
    // OPOCO: `workingQuantity`, `pendingQuantity`), and both the working and
    // a pending order can fill: together they are the list's quantity.
    action.quantity = BASE_QUANTITIES
        .iter()
        .filter_map(|name| decimal(name))
        .reduce(|total, q| total.checked_add(q).unwrap_or(Decimal::MAX));
    // A USD-M stop with `closePosition` closes the whole position when it triggers,
    // whatever quantity it names (Binance documents that it takes none, and refuses one,
    // but keygate does not rest a limit on that): it counts as naming none.
    if param("closePosition").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        action.quantity = None;
    }
    // An OPO's pending orders name no quantity: they trade what the working
    // order filled, so the list can trade its working quantity twice.
    if path.ends_with("/orderList/opo") || path.ends_with("/orderList/opoco") {
        if let Some(working) = decimal("workingQuantity") {
            action.quantity = action
                .quantity
                .map(|q| q.checked_add(working).unwrap_or(Decimal::MAX));
        }
    }
    // The price that bounds the fill, and so states a buy's notional, only where
    // the order type says it does (a limit, or a stop that becomes a limit); a
    // quote quantity only on a spot market order.
    let futures = path.starts_with("/fapi/") || path.starts_with("/dapi/");
    let order_type = action.order_type.as_deref().unwrap_or("");
    let limit_types: &[&str] = if futures {
        &["LIMIT", "STOP", "TAKE_PROFIT"]
    } else {
        &[
            "LIMIT",
            "LIMIT_MAKER",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT_LIMIT",
        ]
    };
    // A pegged order (spot `pegPriceType`, futures `priceMatch`) fills at a
    // price the exchange sets from the book; its `price` is only checked
    // against the filters, so it bounds nothing and the order is priced from
    // the market like one without a limit.
    let pegged = is_pegged(&param);
    // An order list's legs each name their own type and prices; a `type` or a
    // `price` of the list itself (which Binance does not take) bounds nothing.
    let order_list =
        path.starts_with("/api/v3/order/oco") || path.starts_with("/api/v3/orderList/");
    if limit_types.contains(&order_type) && !pegged && !order_list {
        action.price = decimal("price");
    }
    if !futures && order_type == "MARKET" && !order_list {
        action.quote_quantity = decimal(QUOTE_QUANTITY);
    }
    // Every other price the order or one of its legs names counts too, whatever
    // the type: triggers, the legs of order lists, and a `price` whose order
    // names no limit type (a modify order names no type at all). The highest
    // is the trigger price, which only ever raises the notional priced from
    // the market, so a price the exchange ignores costs a limit nothing. All
    // of them read as positive numbers, or the request would not have parsed.
    // A trailing stop fills up to its trail above the lowest price it saw.
    action.trail_percent = TRAILS
        .iter()
        .filter_map(|&name| match decimal(name)? {
            percent if name == FUTURES_TRAIL => Some(percent),
            bips => Some(bips / Decimal::ONE_HUNDRED),
        })
        .max();
    let limit_price = action.price.is_some().then_some("price");
    action.trigger_price = ORDER_PRICES
        .iter()
        .filter(|name| Some(**name) != limit_price)
        .filter_map(|name| decimal(name))
        .max();
    // USD-M lets a limit order be modified in place (`PUT`): what it is placed with and
    // modified to is kept, for reconciliation to tell a modification made behind
    // keygate's back. A pegged price is the exchange's to set, so none is kept.
    let modifiable = matches!(path, "/fapi/v1/order" | BATCH_ORDERS_PATH);
    let placed_limit = method == "POST" && order_type == "LIMIT";
    if kind == ActionKind::Trade && modifiable && (placed_limit || method == "PUT") {
        let named = |name| param(name).filter(|id| !id.is_empty());
        let modifies = match (named("orderId"), named("origClientOrderId")) {
            // The exchange takes `orderId` when both are sent; an empty one is none.
            (Some(id), _) => Some(OrderRef::OrderId(id.to_owned())),
            (None, Some(id)) => Some(OrderRef::ClientOrderId(id.to_owned())),
            (None, None) => None,
        };
        // The order's quantity as read above (on USD-M, `quantity` alone).
        action.terms = action
            .quantity
            .filter(|_| method == "POST" || modifies.is_some())
            .map(|quantity| OrderTerms {
                price: decimal("price").filter(|_| !pegged),
                quantity,
                modifies: modifies.filter(|_| method == "PUT"),
            });
    }
}

/// Computes a Binance HMAC-SHA256 signature: lowercase hex.
pub fn hmac_signature(secret: &[u8], payload: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, payload).finalize().into_bytes())
}

fn hmac_sha256(secret: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(payload);
    mac
}

/// `text` as a price: digits with at most one decimal point, above zero. Binance's own
/// rule is digits, optionally a point and more digits.
pub(super) fn positive_decimal(text: &str) -> Option<Decimal> {
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    text.parse::<Decimal>()
        .ok()
        .filter(|price| *price > Decimal::ZERO)
}

pub(super) fn malformed(reason: &str) -> Error {
    Error::Malformed {
        reason: reason.to_owned(),
    }
}

/// Splits `name=value`, which starts at `start` of the raw text, and decodes both halves.
fn decode_pair(pair: &str, start: usize) -> Result<(Text, Text), Error> {
    let (name, value) = pair
        .split_once('=')
        .ok_or_else(|| malformed("every parameter needs a name and a value"))?;
    if name.is_empty() {
        return Err(malformed("empty parameter name"));
    }
    let value_start = start + name.len() + 1;
    let decoded_name = decode_component(name, start)?;
    // Binance names its parameters in letters, digits and `_` only. A name with anything
    // else (`symbol%20`, `s%C4%B1de`) could be read by the exchange, trimming or folding
    // it, as one keygate did not classify.
    let name_text = match &decoded_name {
        Text::Raw(_) => name,
        Text::Decoded(decoded) => decoded,
    };
    if !name_text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(malformed(
            "a parameter name holds a character other than a letter, a digit or _",
        ));
    }
    Ok((decoded_name, decode_component(value, value_start)?))
}

/// `component`, which starts at `start` of the raw text, percent-decoded (`+` is a space).
/// A `%` not followed by two hex digits is refused: decoders differ on it (kept as it is,
/// an error, `%uXXXX`), so the exchange could read it otherwise than keygate.
fn decode_component(component: &str, start: usize) -> Result<Text, Error> {
    if !component.bytes().any(|b| b == b'+' || b == b'%') {
        return Ok(Text::Raw(start..start + component.len()));
    }
    let bytes = component.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(malformed("a % is not followed by two hex digits"));
    }
    let spaced = component.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| Text::Decoded(c.into_owned()))
        .map_err(|_| malformed("percent-encoding does not decode to UTF-8"))
}

/// The text of a name or value of a request whose raw query and body are `raw`.
fn text<'a>(raw: &'a str, text: &'a Text) -> &'a str {
    match text {
        Text::Raw(range) => &raw[range.clone()],
        Text::Decoded(decoded) => decoded,
    }
}

/// The parameters that name a price at which an order, or a leg of an order list, fills
/// or is triggered, on every order endpoint of the table: single orders and their
/// modification (`price`, `stopPrice`), futures trailing stops (`activationPrice`) and
/// algo orders (`triggerPrice`, `activatePrice`), the deprecated OCO (`stopLimitPrice`),
/// and the legs of the OCO, OTO, OTOCO, OPO and OPOCO lists.
///
/// Each must be a positive decimal number ([`SignedRequest::parse`]), and each counts
/// towards an order's notional ([`SignedRequest::classify`]).
pub(super) const ORDER_PRICES: &[&str] = &[
    "price",
    "stopPrice",
    "stopLimitPrice",
    "triggerPrice",
    "activationPrice",
    "activatePrice",
    "abovePrice",
    "aboveStopPrice",
    "belowPrice",
    "belowStopPrice",
    "workingPrice",
    "pendingPrice",
    "pendingStopPrice",
    "pendingAbovePrice",
    "pendingAboveStopPrice",
    "pendingBelowPrice",
    "pendingBelowStopPrice",
];

/// The parameters that size an order or a leg of an order list in the base asset. Each
/// must be a positive decimal number ([`SignedRequest::parse`]), as must
/// [`QUOTE_QUANTITY`]: they are added up for the order's notional
/// ([`SignedRequest::classify`]), so one below zero would lower it.
pub(super) const BASE_QUANTITIES: &[&str] = &["quantity", "workingQuantity", "pendingQuantity"];

/// The quantity an amendment lowers an open order to; a positive decimal number too.
const AMENDED_QUANTITY: &str = "newQty";

/// The parameters that make a spot order pegged: it fills at a price the exchange takes
/// from the book (plus an offset), whatever its `price` says.
const PEG_PARAMETERS: &[&str] = &["pegPriceType", "pegOffsetType", "pegOffsetValue"];

/// The parameters keygate reads to classify, decide and re-sign, besides the prices,
/// quantities, pegs and trails of the lists around it ([`read_parameter_like`]).
const OTHER_READ_PARAMETERS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "timestamp",
    "recvWindow",
    "newClientOrderId",
    "orderId",
    "origClientOrderId",
    "clientAlgoId",
    "algoId",
    "priceMatch",
    "closePosition",
    "coin",
    "asset",
    "amount",
    "address",
    "addressTag",
    "network",
    "fromAsset",
    "toAsset",
    "fromAmount",
    "toAmount",
    "baseAsset",
    "quoteAsset",
    "baseAmount",
    "quoteAmount",
    "toEmail",
    QUOTE_QUANTITY,
    BATCH_ORDERS,
    // The types and sides of an order list's legs (`market_buy_when_triggered`).
    "workingType",
    "workingSide",
    "pendingType",
    "pendingSide",
    "pendingAboveType",
    "pendingBelowType",
    "aboveType",
    "belowType",
];

/// Whether keygate reads a parameter spelt `name` in any case: one of these spelt in
/// another case is refused ([`SignedRequest::parse`]).
pub(super) fn read_parameter_like(name: &str) -> Option<&'static str> {
    [
        ORDER_PRICES,
        BASE_QUANTITIES,
        PEG_PARAMETERS,
        TRAILS,
        OTHER_READ_PARAMETERS,
    ]
    .into_iter()
    .flatten()
    .copied()
    .find(|known| known.eq_ignore_ascii_case(name))
}

/// How far a trailing stop trails: futures `callbackRate` in percent ([`FUTURES_TRAIL`]),
/// the others in basis points: a spot order's `trailingDelta`, and the stop legs' of the
/// order lists (OCO above and below, OTO and OPO pending, OTOCO and OPOCO pending above
/// and below). Each must be a positive decimal number ([`SignedRequest::parse`]): one
/// that did not read would leave the trail out of the order's notional.
const TRAILS: &[&str] = &[
    FUTURES_TRAIL,
    "trailingDelta",
    "aboveTrailingDelta",
    "belowTrailingDelta",
    "pendingTrailingDelta",
    "pendingAboveTrailingDelta",
    "pendingBelowTrailingDelta",
];

/// The one trail in [`TRAILS`] given in percent.
const FUTURES_TRAIL: &str = "callbackRate";

/// The parameter that sizes a spot market order in the quote asset.
pub(super) const QUOTE_QUANTITY: &str = "quoteOrderQty";

/// What a withdrawal or a transfer moves. It must be a positive decimal number
/// ([`SignedRequest::parse`]), as Binance writes one (found by review: `1E+2` was let
/// through unread, recorded without its amount and left out of the day's withdrawals,
/// which a limit set later that day then did not count).
const MOVED_AMOUNT: &str = "amount";
