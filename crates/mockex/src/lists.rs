//! Spot order lists (OCO, OTO, OTOCO, OPO, OPOCO and the deprecated `order/oco`): their
//! placement, how one leg's fate decides the others', their cancel and their queries.
//!
//! A list's legs are orders of the account's book like any other, each with its
//! `orderListId`, numbered in a row when the list is placed. An OCO pair's two legs share
//! one reservation (both cannot trade), which the first of them holds. A pending leg waits
//! as `PENDING_NEW`, reserving nothing, until its working order fills; then it is placed
//! as a new order would be (an OPO's with the quantity the working order bought).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::auth::Params;
use crate::book::{self, Account, Order, OrderType, Side, Trade};
use crate::market::{self, Market, Product};
use crate::routes::{self, ApiError, Ids, RespType};

/// The first `orderListId` a simulator gives.
pub(crate) const FIRST_ORDER_LIST_ID: u64 = 1;

/// The kind of list a request places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `POST /api/v3/orderList/oco`.
    Oco,
    /// `POST /api/v3/order/oco`, the deprecated OCO (`price`, `stopPrice`, …).
    DeprecatedOco,
    /// `POST /api/v3/orderList/oto`.
    Oto,
    /// `POST /api/v3/orderList/otoco`.
    Otoco,
    /// `POST /api/v3/orderList/opo`.
    Opo,
    /// `POST /api/v3/orderList/opoco`.
    Opoco,
}

impl ListKind {
    /// `contingencyType`: `OCO` for an OCO; every list with a working order is an `OTO`,
    /// as Binance's OTOCO, OPO and OPOCO answers show.
    fn contingency_type(self) -> &'static str {
        match self {
            ListKind::Oco | ListKind::DeprecatedOco => "OCO",
            _ => "OTO",
        }
    }

    /// Whether the list has a working order.
    fn has_working(self) -> bool {
        !matches!(self, ListKind::Oco | ListKind::DeprecatedOco)
    }

    /// Whether the pending legs trade what the working order bought (One Pays the Other).
    fn is_opo(self) -> bool {
        matches!(self, ListKind::Opo | ListKind::Opoco)
    }

    /// How many orders the list holds (and adds to the unfilled order count).
    pub(crate) fn legs(self) -> usize {
        match self {
            ListKind::Oco | ListKind::DeprecatedOco | ListKind::Oto | ListKind::Opo => 2,
            ListKind::Otoco | ListKind::Opoco => 3,
        }
    }
}

/// One order list of an account.
#[derive(Clone, Debug)]
pub(crate) struct OrderList {
    order_list_id: u64,
    kind: ListKind,
    list_client_order_id: String,
    symbol: &'static str,
    transaction_time: u64,
    /// Every leg's `orderId`, in the list's order.
    order_ids: Vec<u64>,
    /// The working order, for a list that has one.
    working: Option<u64>,
    /// The two legs of an OCO pair: an OCO's, or an OTOCO's and OPOCO's pending ones.
    pair: Option<[u64; 2]>,
}

/// The parameters of a list's request that are no leg's: the list's own and the signed
/// request's.
const LIST_PARAMS: &[&str] = &[
    "symbol",
    "listClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "recvWindow",
    "timestamp",
];

/// How a leg's parameters are named in the request: the name each parameter of a single
/// order (`type`, `price`, …) has there.
struct LegNames {
    /// (single order's name, the request's name) for each parameter the leg reads.
    names: Vec<(&'static str, String)>,
    /// The leg's order type when the request does not name it (the deprecated OCO).
    fixed_type: Option<&'static str>,
}

impl LegNames {
    /// The names of a leg whose parameters are `PREFIX` followed by the single order's
    /// name capitalised (`aboveType`, `pendingAbovePrice`), with the side and quantity
    /// under the names given (shared with other legs), or no quantity.
    fn prefixed(prefix: &str, side: &str, quantity: Option<&str>) -> LegNames {
        let mut names = vec![("side", side.to_owned())];
        if let Some(quantity) = quantity {
            names.push(("quantity", quantity.to_owned()));
        }
        for (single, suffix) in [
            ("type", "Type"),
            ("price", "Price"),
            ("stopPrice", "StopPrice"),
            ("trailingDelta", "TrailingDelta"),
            ("timeInForce", "TimeInForce"),
            ("icebergQty", "IcebergQty"),
            ("newClientOrderId", "ClientOrderId"),
            ("strategyId", "StrategyId"),
            ("strategyType", "StrategyType"),
            ("pegPriceType", "PegPriceType"),
            ("pegOffsetType", "PegOffsetType"),
            ("pegOffsetValue", "PegOffsetValue"),
        ] {
            names.push((single, format!("{prefix}{suffix}")));
        }
        LegNames {
            names,
            fixed_type: None,
        }
    }

    /// Every parameter of the request the leg reads.
    fn read(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(_, name)| name.as_str())
    }

    /// The request's name for the single order's `single`.
    fn of(&self, single: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(s, _)| *s == single)
            .map(|(_, name)| name.as_str())
    }

    /// The leg's order type as the request names it.
    fn order_type<'a>(&self, params: &'a Params) -> Result<&'a str, ApiError> {
        match self.fixed_type {
            Some(fixed) => Ok(fixed),
            None => params.required(self.of("type").unwrap_or("type")),
        }
    }

    /// The leg as a single order's parameters, for [`routes::read_new_order`].
    fn single(&self, params: &Params, symbol: &str, client_order_id: &str) -> Params {
        let mut values = BTreeMap::new();
        values.insert("symbol".to_owned(), symbol.to_owned());
        if let Some(fixed) = self.fixed_type {
            values.insert("type".to_owned(), fixed.to_owned());
        }
        for (single, name) in &self.names {
            if let Some(value) = params.get(name) {
                values.insert((*single).to_owned(), value.to_owned());
            }
        }
        let named = values
            .get("newClientOrderId")
            .is_some_and(|id| !id.is_empty());
        if !named {
            values.insert("newClientOrderId".to_owned(), client_order_id.to_owned());
        }
        Params::from_values(values)
    }

    /// `error` as the request's names put it: a single order's parameter named as the leg
    /// names it (`'price'` becomes `'abovePrice'`).
    fn rename(&self, mut error: ApiError) -> ApiError {
        for (single, name) in &self.names {
            let quoted = format!("'{single}'");
            if error.msg.contains(&quoted) {
                error.msg = error.msg.replace(&quoted, &format!("'{name}'")).into();
                break;
            }
        }
        error
    }
}

/// The legs of a request of `kind`, in the order of the list's `orders`: the working leg
/// first; then each OCO pair's stop-loss leg before its other one, as Binance's answers
/// number them. The `bool` says whether a leg is pending. Also the pair's positions
/// (indices of its above and below legs).
struct Layout {
    legs: Vec<(LegNames, bool)>,
    /// Indices into `legs` of the pair's above and below leg.
    pair: Option<(usize, usize)>,
}

/// The deprecated OCO's legs: a `LIMIT_MAKER` leg (`price`, `limitClientOrderId`,
/// `limitIcebergQty`) and a stop leg (`stopPrice`, `trailingDelta`, `stopClientOrderId`,
/// `stopIcebergQty`), `STOP_LOSS_LIMIT` at `stopLimitPrice` with `stopLimitTimeInForce`
/// when a `stopLimitPrice` is sent, else `STOP_LOSS`. Above and below by side: a sell's
/// limit leg is above, a buy's below.
fn deprecated_oco_legs(params: &Params) -> Result<(LegNames, LegNames, Side), ApiError> {
    let side = Side::parse(params.required("side")?)?;
    let limit = LegNames {
        names: vec![
            ("side", "side".to_owned()),
            ("quantity", "quantity".to_owned()),
            ("price", "price".to_owned()),
            ("icebergQty", "limitIcebergQty".to_owned()),
            ("newClientOrderId", "limitClientOrderId".to_owned()),
            ("strategyId", "limitStrategyId".to_owned()),
            ("strategyType", "limitStrategyType".to_owned()),
        ],
        fixed_type: Some("LIMIT_MAKER"),
    };
    let stop_limit = params.get("stopLimitPrice").is_some_and(|p| !p.is_empty());
    let stop = LegNames {
        names: vec![
            ("side", "side".to_owned()),
            ("quantity", "quantity".to_owned()),
            ("stopPrice", "stopPrice".to_owned()),
            ("price", "stopLimitPrice".to_owned()),
            ("timeInForce", "stopLimitTimeInForce".to_owned()),
            ("trailingDelta", "trailingDelta".to_owned()),
            ("icebergQty", "stopIcebergQty".to_owned()),
            ("newClientOrderId", "stopClientOrderId".to_owned()),
            ("strategyId", "stopStrategyId".to_owned()),
            ("strategyType", "stopStrategyType".to_owned()),
        ],
        fixed_type: Some(if stop_limit {
            "STOP_LOSS_LIMIT"
        } else {
            "STOP_LOSS"
        }),
    };
    // `stopPrice` is mandatory here, as the deprecated endpoint's table has it.
    params.required("stopPrice")?;
    Ok(match side {
        Side::Sell => (limit, stop, side),
        Side::Buy => (stop, limit, side),
    })
}

/// The legs of a list of `kind` as `params` name them.
fn layout(kind: ListKind, params: &Params) -> Result<Layout, ApiError> {
    let working = || LegNames::prefixed("working", "workingSide", Some("workingQuantity"));
    let pending_quantity = (!kind.is_opo()).then_some("pendingQuantity");
    let pair = |above: LegNames, below: LegNames, params: &Params, offset: usize| {
        // The stop-loss leg comes first.
        let below_first = below
            .order_type(params)
            .is_ok_and(|t| t.starts_with("STOP_LOSS"));
        if below_first {
            (vec![below, above], (offset + 1, offset))
        } else {
            (vec![above, below], (offset, offset + 1))
        }
    };
    Ok(match kind {
        ListKind::Oco | ListKind::DeprecatedOco => {
            let (above, below) = if kind == ListKind::Oco {
                (
                    LegNames::prefixed("above", "side", Some("quantity")),
                    LegNames::prefixed("below", "side", Some("quantity")),
                )
            } else {
                let (above, below, _) = deprecated_oco_legs(params)?;
                (above, below)
            };
            let (legs, positions) = pair(above, below, params, 0);
            Layout {
                legs: legs.into_iter().map(|l| (l, false)).collect(),
                pair: Some(positions),
            }
        }
        ListKind::Oto | ListKind::Opo => Layout {
            legs: vec![
                (working(), false),
                (
                    LegNames::prefixed("pending", "pendingSide", pending_quantity),
                    true,
                ),
            ],
            pair: None,
        },
        ListKind::Otoco | ListKind::Opoco => {
            let above = LegNames::prefixed("pendingAbove", "pendingSide", pending_quantity);
            let below = LegNames::prefixed("pendingBelow", "pendingSide", pending_quantity);
            let (legs, positions) = pair(above, below, params, 1);
            let mut all = vec![(working(), false)];
            all.extend(legs.into_iter().map(|l| (l, true)));
            Layout {
                legs: all,
                pair: Some(positions),
            }
        }
    })
}

/// Holds an OCO pair's types to Binance's rules: each a type the pair takes (-1158
/// "Order type not supported in OCO."), not both limit orders (-1168), a `LIMIT_MAKER`
/// leg below a buy's price (-1165) and above a sell's (-1166), the stop loss above a
/// buy's (-1196) and below a sell's (-1197), as Binance's error codes name them (found
/// by review: a buy's stop loss below was placed); one leg a stop loss, the other a take
/// profit or `LIMIT_MAKER` (-1158 otherwise). With one leg a stop loss, a take profit on
/// the stop loss's side is the same mistake, told as -1196 or -1197.
fn check_pair_types(side: Side, above: OrderType, below: OrderType) -> Result<(), ApiError> {
    let takes = |t: OrderType| t.is_conditional() || t == OrderType::LimitMaker;
    if !takes(above) || !takes(below) {
        return Err(ApiError::new(
            400,
            -1158,
            "Order type not supported in OCO.",
        ));
    }
    if above == OrderType::LimitMaker && below == OrderType::LimitMaker {
        return Err(ApiError::new(
            400,
            -1168,
            "At least one OCO order must be contingent.",
        ));
    }
    if above.is_stop_loss() == below.is_stop_loss() {
        return Err(ApiError::new(
            400,
            -1158,
            "Order type not supported in OCO.",
        ));
    }
    match side {
        Side::Buy if above == OrderType::LimitMaker => Err(ApiError::new(
            400,
            -1165,
            "A limit order in a buy OCO must be below.",
        )),
        Side::Sell if below == OrderType::LimitMaker => Err(ApiError::new(
            400,
            -1166,
            "A limit order in a sell OCO must be above.",
        )),
        Side::Buy if below.is_stop_loss() => Err(ApiError::new(
            400,
            -1196,
            "A stop loss order in a buy OCO must be above.",
        )),
        Side::Sell if above.is_stop_loss() => Err(ApiError::new(
            400,
            -1197,
            "A stop loss order in a sell OCO must be below.",
        )),
        _ => Ok(()),
    }
}

/// The price an OCO leg is placed by, as Binance's price restrictions compare it with the
/// last price: a `LIMIT_MAKER` leg's limit price, a conditional one's stop price (none
/// for one that only trails). A `TAKE_PROFIT_LIMIT` leg is compared by its stop price,
/// not its limit price (found by review: one whose stop the price had already reached
/// was placed).
fn pair_price(order: &Order) -> Option<Decimal> {
    match order.order_type {
        OrderType::LimitMaker => Some(order.price),
        _ => order.stop_price,
    }
}

/// Binance's price restrictions on an OCO pair: above leg's price > last price > below
/// leg's price, else -2010 "The relationship of the prices for the orders is not
/// correct." The simulator's reference price is the last price.
fn check_pair_prices(m: &Market, above: &Order, below: &Order) -> Result<(), ApiError> {
    let wrong = pair_price(above).is_some_and(|p| p <= m.price)
        || pair_price(below).is_some_and(|p| p >= m.price);
    if wrong {
        return Err(ApiError::new(
            400,
            -2010,
            "The relationship of the prices for the orders is not correct.",
        ));
    }
    Ok(())
}

/// What an OCO pair reserves, once for both legs (only one of them can trade): a sell its
/// quantity of the base asset; a buy the quote the dearer leg needs.
fn pair_reservation(m: &Market, legs: [&Order; 2]) -> (&'static str, Decimal) {
    let cost = |o: &Order| {
        let price = if o.order_type.is_limit() {
            o.price
        } else {
            o.stop_price.unwrap_or(m.price)
        };
        o.orig_qty * price
    };
    match legs[0].side {
        Side::Sell => (m.base, legs[0].orig_qty),
        Side::Buy => (m.quote, cost(legs[0]).max(cost(legs[1]))),
    }
}

/// Puts an OCO pair on the book: checks neither `LIMIT_MAKER` leg would take (-2010),
/// reserves for both ([`pair_reservation`]) on the first, and makes them `NEW`, the
/// `LIMIT_MAKER` leg working from `now` and a conditional one waiting for its trigger.
fn arm_pair(
    account: &mut Account,
    m: &Market,
    legs: &mut [Order],
    now: u64,
) -> Result<(), ApiError> {
    let takes = legs.iter().any(|o| {
        o.order_type == OrderType::LimitMaker
            && match o.side {
                Side::Buy => o.price >= market::best_ask(m),
                Side::Sell => o.price <= market::best_bid(m),
            }
    });
    if takes {
        return Err(ApiError::new(
            400,
            -2010,
            "Order would immediately match and take.",
        ));
    }
    let (asset, amount) = pair_reservation(m, [&legs[0], &legs[1]]);
    account.lock(asset, amount)?;
    for (i, leg) in legs.iter_mut().enumerate() {
        leg.reserved = if i == 0 { amount } else { Decimal::ZERO };
        leg.status = "NEW";
        leg.working_time = (!leg.order_type.is_conditional()).then_some(now);
    }
    Ok(())
}

/// The `newOrderRespType` of a list: `ACK`, `RESULT` or `FULL`, `RESULT` by default (the
/// reports Binance's list answers show), else -1136.
fn resp_type(params: &Params) -> Result<RespType, ApiError> {
    match params.get("newOrderRespType") {
        None | Some("RESULT") => Ok(RespType::Result),
        Some("ACK") => Ok(RespType::Ack),
        Some("FULL") => Ok(RespType::Full),
        Some(_) => Err(ApiError::new(400, -1136, "Invalid newOrderRespType")),
    }
}

/// `listClientOrderId` as sent (letters, digits, `-` and `_`, at most 36, else -1100)
/// or made up, and refused (-2010 "Duplicate order sent.") when a list still open carries
/// it: "A new order list with the same listClientOrderId is accepted only when the
/// previous one is filled or completely expired."
fn list_client_order_id(account: &Account, ids: &Ids, params: &Params) -> Result<String, ApiError> {
    let id = match params.get("listClientOrderId").filter(|id| !id.is_empty()) {
        Some(id) => {
            let legal = id.len() <= 36
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
            if !legal {
                return Err(ApiError::illegal_chars(
                    "listClientOrderId",
                    "^[a-zA-Z0-9-_]{1,36}$",
                ));
            }
            id.to_owned()
        }
        None => format!("mockexlist{:012}", ids.next_order_list_id),
    };
    let taken = account
        .order_lists
        .iter()
        .any(|l| l.list_client_order_id == id && is_open(account, l));
    if taken {
        return Err(ApiError::new(400, -2010, "Duplicate order sent."));
    }
    Ok(id)
}

/// `POST /api/v3/orderList/{oco,oto,otoco,opo,opoco}` and `POST /api/v3/order/oco`:
/// reads a list of `kind`, holds each leg to what a single order of its type must send
/// and to the filters (an OPO's pending legs, which have no quantity of their own, by
/// the working quantity), the OCO pair to its types and price restrictions, and an OTO's
/// conditional pending leg to its stop price not being reached; then places it. The
/// working order is matched as a new order is and, when it fills at once, the pending
/// legs are placed after the answer was taken (which shows them `PENDING_NEW`, as
/// Binance's does). Nothing is placed unless all of it is.
pub(crate) fn place(
    account: &mut Account,
    ids: &mut Ids,
    kind: ListKind,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = routes::symbol(params, Product::Spot)?;
    let resp_type = resp_type(params)?;
    let list_client_order_id = list_client_order_id(account, ids, params)?;
    let layout = layout(kind, params)?;
    // A parameter no leg reads (an OPO's `pendingQuantity`, a misspelt leg parameter) is
    // refused, as a single order's is (found by review: it was ignored).
    let read: Vec<&str> = LIST_PARAMS
        .iter()
        .copied()
        .chain(layout.legs.iter().flat_map(|(names, _)| names.read()))
        .collect();
    routes::check_all_read(params, &read)?;
    if kind.has_working() {
        let working_type = params.required("workingType")?;
        if !matches!(working_type, "LIMIT" | "LIMIT_MAKER") {
            return Err(ApiError::invalid_parameter("workingType"));
        }
    }
    if kind.is_opo() {
        // "Only working orders on the BUY side and pending order(s) on the SELL side are
        // accepted."
        if Side::parse(params.required("workingSide")?)? != Side::Buy {
            return Err(ApiError::invalid_parameter("workingSide"));
        }
        if Side::parse(params.required("pendingSide")?)? != Side::Sell {
            return Err(ApiError::invalid_parameter("pendingSide"));
        }
    }
    if let Some((above, below)) = layout.pair {
        let side =
            Side::parse(params.required(layout.legs[above].0.of("side").unwrap_or("side"))?)?;
        let type_of = |i: usize| -> Result<OrderType, ApiError> {
            let names = &layout.legs[i].0;
            OrderType::parse(names.order_type(params)?, Product::Spot)
                .map_err(|_| ApiError::new(400, -1158, "Order type not supported in OCO."))
        };
        check_pair_types(side, type_of(above)?, type_of(below)?)?;
    }
    // Each leg as the single order it is, under the id it will have.
    let first_id = ids.next_order_id;
    let working_quantity = params.decimal("workingQuantity")?;
    let mut legs = Vec::with_capacity(layout.legs.len());
    for (i, (names, _)) in layout.legs.iter().enumerate() {
        let order_id = first_id + i as u64;
        let made_up = format!("mockex{order_id:016}");
        let single = names.single(params, m.symbol, &made_up);
        let (mut new, _) =
            routes::read_new_order(ids, Product::Spot, &single).map_err(|e| names.rename(e))?;
        if kind.has_working()
            && i == 0
            && !matches!(new.order_type, OrderType::Limit | OrderType::LimitMaker)
        {
            return Err(ApiError::invalid_parameter("workingType"));
        }
        if new.quote_order_qty.is_some() {
            return Err(ApiError::new(
                400,
                -1106,
                "Parameter 'quoteOrderQty' sent when not required.",
            ));
        }
        // An OPO's pending leg trades what the working order buys: it is held to the
        // filters by the working quantity, and has none of its own until then.
        let opo_pending = kind.is_opo() && i > 0;
        if opo_pending {
            new.quantity = working_quantity;
        }
        book::check_client_order_id(account, Product::Spot, &new.client_order_id)
            .map_err(|e| names.rename(e))?;
        let mut record =
            book::new_record(account, new, order_id, now).map_err(|e| names.rename(e))?;
        if opo_pending {
            record.orig_qty = Decimal::ZERO;
        }
        record.order_list_id = Some(ids.next_order_list_id);
        legs.push(record);
    }
    let mut seen = std::collections::HashSet::new();
    if !legs.iter().all(|o| seen.insert(o.client_order_id.clone())) {
        return Err(ApiError::new(400, -2010, "Duplicate order sent."));
    }
    if let Some((above, below)) = layout.pair {
        check_pair_prices(m, &legs[above], &legs[below])?;
    }
    // No conditional leg may be one that would trigger at once, as no single order may.
    if legs.iter().any(|leg| leg.would_trigger_at(m.price)) {
        return Err(ApiError::would_trigger_immediately());
    }
    // Put the list to work: the working order, or the OCO pair.
    let mut trades = Vec::new();
    if kind.has_working() {
        trades = book::start(account, &mut legs[0], &mut ids.next_trade_id, now, true)?;
        for pending in &mut legs[1..] {
            pending.status = "PENDING_NEW";
            pending.working_time = None;
        }
    } else {
        arm_pair(account, m, &mut legs, now)?;
    }
    let list = OrderList {
        order_list_id: ids.next_order_list_id,
        kind,
        list_client_order_id,
        symbol: m.symbol,
        transaction_time: now,
        order_ids: legs.iter().map(|o| o.order_id).collect(),
        working: kind.has_working().then_some(first_id),
        pair: layout.pair.map(|(a, b)| {
            let (first, second) = (a.min(b), a.max(b));
            [first_id + first as u64, first_id + second as u64]
        }),
    };
    ids.next_order_list_id += 1;
    ids.next_order_id += legs.len() as u64;
    account.orders.extend(legs.iter().cloned());
    account.order_lists.push(list.clone());
    let reports: Vec<Value> = legs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let fills: &[Trade] = if i == 0 { &trades } else { &[] };
            let mut report = routes::spot_new_order(o, fills, resp_type, now);
            // An OPO's pending leg has no quantity until its working order fills.
            if kind.is_opo() && o.status == "PENDING_NEW" {
                if let Some(report) = report.as_object_mut() {
                    report.remove("origQty");
                }
            }
            report
        })
        .collect();
    let mut answer = status(account, &list);
    answer["orderReports"] = Value::Array(reports);
    if !trades.is_empty() {
        account.unreported_fills += 1;
    }
    if let Some(working) = list.working {
        after_working(account, ids, &list, working, now);
    }
    Ok(answer)
}

/// What follows from the working order of `list` having moved: filled, its pending legs
/// are placed ([`place_pending`]); expired or cancelled, they expire or are cancelled
/// with it.
fn after_working(account: &mut Account, ids: &mut Ids, list: &OrderList, working: u64, now: u64) {
    let Some(status) = order(account, working).map(|o| o.status) else {
        return;
    };
    match status {
        "FILLED" => place_pending(account, ids, list, now),
        "EXPIRED" | "CANCELED" => end_open_legs(account, list, status, now),
        _ => {}
    }
}

/// Places the pending legs of `list`, whose working order has filled, as new orders of
/// their types would be placed (an OPO's with the quantity the working order bought); a
/// leg the book refuses (the balance is short, a `LIMIT_MAKER` would take) expires, and
/// with it the rest of the list. A conditional leg's stop is not checked again against
/// the price: it was checked when the list was placed, and the simulator's prices do
/// not move.
fn place_pending(account: &mut Account, ids: &mut Ids, list: &OrderList, now: u64) {
    let Some(m) = market::find(Product::Spot, list.symbol) else {
        return;
    };
    let bought = list
        .working
        .and_then(|w| order(account, w))
        .map(|o| o.executed_qty)
        .unwrap_or_default();
    let mut pending: Vec<Order> = list
        .order_ids
        .iter()
        .filter(|id| Some(**id) != list.working)
        .filter_map(|id| order(account, *id).cloned())
        .filter(|o| o.status == "PENDING_NEW")
        .collect();
    if list.kind.is_opo() {
        for leg in &mut pending {
            leg.orig_qty = bought;
        }
    }
    let placed = match list.pair {
        Some(_) => arm_pair(account, m, &mut pending, now),
        None => pending.iter_mut().try_for_each(|leg| {
            leg.update_time = now;
            book::start(account, leg, &mut ids.next_trade_id, now, false).map(|_| ())
        }),
    };
    for leg in &mut pending {
        if placed.is_err() {
            leg.status = "EXPIRED";
            leg.reserved = Decimal::ZERO;
        }
        store(account, leg.clone());
    }
}

/// Ends each open leg of `list` with `status` (`CANCELED` or `EXPIRED`) as of `now`,
/// releasing what it reserved.
fn end_open_legs(account: &mut Account, list: &OrderList, status: &'static str, now: u64) {
    for id in &list.order_ids {
        let index = account
            .orders
            .iter()
            .position(|o| o.product == Product::Spot && o.order_id == *id && o.is_open());
        if let Some(index) = index {
            book::end(account, index, status, now);
        }
    }
}

/// Acts on spot order `order_id` as if the market had reached its price
/// ([`book::reach`]), with what that means for a list it is a leg of: an OCO leg's other
/// leg expires first (handing back the pair's reservation); a working order that fills
/// has its pending legs placed.
pub(crate) fn reach(
    account: &mut Account,
    ids: &mut Ids,
    order_id: u64,
    now: u64,
) -> Result<(Order, Vec<Trade>), ApiError> {
    let list = order(account, order_id)
        .filter(|o| matches!(o.status, "NEW" | "PARTIALLY_FILLED"))
        .and_then(|o| o.order_list_id)
        .and_then(|id| list_by_id(account, id).cloned());
    if let Some([a, b]) = list.as_ref().and_then(|l| l.pair) {
        if a == order_id || b == order_id {
            let other = if a == order_id { b } else { a };
            if let Some(index) = index_of(account, other).filter(|&i| account.orders[i].is_open()) {
                book::end(account, index, "EXPIRED", now);
            }
            // The pair's reservation, held by the first leg, is released with it; the
            // leg that acts settles on its own.
        }
    }
    let reached = book::reach(account, order_id, &mut ids.next_trade_id, now);
    if let Some(list) = &list {
        if list.working == Some(order_id) {
            after_working(account, ids, list, order_id, now);
        }
    }
    let (order, trades) = reached?;
    if !trades.is_empty() {
        account.unreported_fills += 1;
    }
    Ok((order, trades))
}

/// Cancels every open leg of list `list_id`, as `DELETE /api/v3/orderList` does (and
/// `DELETE /api/v3/order` of one of its legs), answering the list with each leg's report
/// (the cancelled ones under the cancel's client id `cancel_client_id`).
pub(crate) fn cancel_list(
    account: &mut Account,
    list_id: u64,
    cancel_client_id: &str,
    now: u64,
) -> Result<Value, ApiError> {
    let list = list_by_id(account, list_id)
        .cloned()
        .filter(|l| is_open(account, l))
        .ok_or_else(unknown_list)?;
    end_open_legs(account, &list, "CANCELED", now);
    let reports = list
        .order_ids
        .iter()
        .filter_map(|id| order(account, *id))
        .map(|o| {
            let mut report = routes::spot_cancelled(o, cancel_client_id.to_owned(), now);
            for field in [
                "time",
                "updateTime",
                "isWorking",
                "workingTime",
                "icebergQty",
            ] {
                if let Some(report) = report.as_object_mut() {
                    report.remove(field);
                }
            }
            if !o.order_type.is_conditional() {
                if let Some(report) = report.as_object_mut() {
                    report.remove("stopPrice");
                }
            }
            report
        })
        .collect();
    let mut answer = status(account, &list);
    answer["orderReports"] = Value::Array(reports);
    Ok(answer)
}

/// `DELETE /api/v3/orderList`: the list named by `orderListId` (searched first) or
/// `listClientOrderId` of `symbol`; when both are sent, the one found by id must carry
/// the other too. Anything else is -2011 ([`unknown_list`]).
pub(crate) fn cancel(
    account: &mut Account,
    ids: &mut Ids,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = routes::symbol(params, Product::Spot)?;
    let list = named(account, params, "listClientOrderId")?
        .filter(|l| l.symbol == m.symbol)
        .map(|l| l.order_list_id)
        .ok_or_else(unknown_list)?;
    let cancel_id = routes::cancel_client_id(ids, params, "newClientOrderId");
    cancel_list(account, list, &cancel_id, now)
}

/// -2011 for a list to cancel that is not there or no longer open, in the words spot
/// answers it with (as binance-java-api's issue 377 quotes Binance's answer).
fn unknown_list() -> ApiError {
    ApiError::new(400, -2011, "Unknown order list sent.")
}

/// The list a query or cancel names: by `orderListId` (searched first) or by the client
/// id parameter `client` (`origClientOrderId` for a query, `listClientOrderId` for a
/// cancel), the one found by id carrying the client id too when both are sent; -1102
/// when neither is sent.
fn named<'a>(
    account: &'a Account,
    params: &Params,
    client: &str,
) -> Result<Option<&'a OrderList>, ApiError> {
    let by_id = params.integer("orderListId")?;
    let by_client = params.get(client).filter(|c| !c.is_empty());
    Ok(match (by_id, by_client) {
        (Some(id), client) => {
            list_by_id(account, id).filter(|l| client.is_none_or(|c| c == l.list_client_order_id))
        }
        (None, Some(client)) => account
            .order_lists
            .iter()
            .rev()
            .find(|l| l.list_client_order_id == client),
        (None, None) => {
            return Err(ApiError::new(
                400,
                -1102,
                format!(
                    "Param '{client}' or 'orderListId' must be sent, but both were empty/null!"
                ),
            ))
        }
    })
}

/// `GET /api/v3/orderList`: one list, whatever became of it, or -2013 "Order list does
/// not exist.".
pub(crate) fn query(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let list = named(account, params, "origClientOrderId")?
        .ok_or_else(|| ApiError::new(400, -2013, "Order list does not exist."))?;
    Ok(status(account, list))
}

/// `GET /api/v3/openOrderList`: the lists with a leg still open, oldest first.
pub(crate) fn open(account: &Account) -> Value {
    Value::Array(
        account
            .order_lists
            .iter()
            .filter(|l| is_open(account, l))
            .map(|l| status(account, l))
            .collect(),
    )
}

/// `GET /api/v3/allOrderList`: lists from `fromId` on (not with a time: -1128), or placed
/// between `startTime` and `endTime` (at most 24 hours apart: -1127), at most `limit`
/// (500 by default, 1000 at most), the most recent unless they start at an id or a time;
/// newest first, as Binance's example lists them.
pub(crate) fn all(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let from_id = params.integer("fromId")?;
    let (from, to) = routes::time_span(params)?;
    routes::check_from_id_or_day(from_id, from, to)?;
    let limit = routes::history_limit(params)?;
    let chosen: Vec<&OrderList> = account
        .order_lists
        .iter()
        .filter(|l| from_id.is_none_or(|id| l.order_list_id >= id))
        .filter(|l| {
            from.is_none_or(|f| l.transaction_time >= f)
                && to.is_none_or(|t| l.transaction_time <= t)
        })
        .collect();
    let from_start = from_id.is_some() || from.is_some();
    Ok(Value::Array(
        routes::page(chosen, limit, from_start)
            .into_iter()
            .rev()
            .map(|l| status(account, l))
            .collect(),
    ))
}

/// A list as the queries answer it: its status and its orders' ids.
fn status(account: &Account, list: &OrderList) -> Value {
    let (list_status, order_status) = if is_open(account, list) {
        ("EXEC_STARTED", "EXECUTING")
    } else {
        ("ALL_DONE", "ALL_DONE")
    };
    json!({
        "orderListId": list.order_list_id,
        "contingencyType": list.kind.contingency_type(),
        "listStatusType": list_status,
        "listOrderStatus": order_status,
        "listClientOrderId": list.list_client_order_id,
        "transactionTime": list.transaction_time,
        "symbol": list.symbol,
        "orders": list.order_ids.iter().filter_map(|id| order(account, *id)).map(|o| json!({
            "symbol": o.symbol,
            "orderId": o.order_id,
            "clientOrderId": o.client_order_id,
        })).collect::<Vec<_>>(),
    })
}

/// Whether a leg of `list` is still open.
fn is_open(account: &Account, list: &OrderList) -> bool {
    list.order_ids
        .iter()
        .any(|id| order(account, *id).is_some_and(Order::is_open))
}

fn list_by_id(account: &Account, id: u64) -> Option<&OrderList> {
    account.order_lists.iter().find(|l| l.order_list_id == id)
}

fn index_of(account: &Account, order_id: u64) -> Option<usize> {
    account
        .orders
        .iter()
        .position(|o| o.product == Product::Spot && o.order_id == order_id)
}

fn order(account: &Account, order_id: u64) -> Option<&Order> {
    index_of(account, order_id).map(|i| &account.orders[i])
}

/// Writes `leg` back over the account's record of the same order.
fn store(account: &mut Account, leg: Order) {
    if let Some(index) = index_of(account, leg.order_id) {
        account.orders[index] = leg;
    }
}
