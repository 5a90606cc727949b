//! What a request would do at the exchange.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Scope;

/// The class of an exchange call, as an exchange adapter reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Market data; needs no key.
    Public,
    /// Reads private data (balances, orders, trades).
    Read,
    /// Places or amends an order.
    Trade,
    /// Cancels orders.
    Cancel,
    /// Sends funds off the exchange.
    Withdraw,
    /// Moves funds between wallets or accounts.
    Transfer,
    /// Changes API keys, sub-accounts or account security settings.
    KeyManagement,
    /// An endpoint the adapter does not know. Always denied.
    Unknown,
}

impl ActionKind {
    /// The scope a client needs for this kind of action; `None` when no scope grants it
    /// (key management and unknown endpoints) and for public calls, which need none.
    pub fn required_scope(self) -> Option<Scope> {
        match self {
            ActionKind::Read => Some(Scope::Read),
            ActionKind::Trade | ActionKind::Cancel => Some(Scope::Trade),
            ActionKind::Withdraw => Some(Scope::Withdraw),
            ActionKind::Transfer => Some(Scope::Transfer),
            ActionKind::Public | ActionKind::KeyManagement | ActionKind::Unknown => None,
        }
    }

    /// Whether the request moves money or positions, so that its audit event must be
    /// durable before it is forwarded.
    pub fn is_sensitive(self) -> bool {
        matches!(
            self,
            ActionKind::Trade | ActionKind::Cancel | ActionKind::Withdraw | ActionKind::Transfer
        )
    }

    /// The snake_case name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Public => "public",
            ActionKind::Read => "read",
            ActionKind::Trade => "trade",
            ActionKind::Cancel => "cancel",
            ActionKind::Withdraw => "withdraw",
            ActionKind::Transfer => "transfer",
            ActionKind::KeyManagement => "key_management",
            ActionKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buy the base asset.
    Buy,
    /// Sell the base asset.
    Sell,
}

/// What one request would do at the exchange, with the parameters that policy looks at.
///
/// Fields that do not apply to an action are `None`. Symbols use the exchange's own ids
/// (`BTCUSDT`), upper case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The class of the call.
    pub kind: ActionKind,
    /// `METHOD /native/path`, for audit records and error messages.
    pub endpoint: String,
    /// The market, for orders and symbol-scoped reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Buy or sell, for orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// The exchange's order type (`LIMIT`, `MARKET`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    /// Base quantity of an order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Decimal>,
    /// Limit price of an order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    /// Quote quantity of an order, when the client gave one (`quoteOrderQty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_quantity: Option<Decimal>,
    /// Asset of a withdrawal or transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Amount of a withdrawal or transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// Destination address of a withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Network of a withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl Action {
    /// An action of `kind` at `endpoint` with no parameters.
    pub fn new(kind: ActionKind, endpoint: impl Into<String>) -> Action {
        Action {
            kind,
            endpoint: endpoint.into(),
            symbol: None,
            side: None,
            order_type: None,
            quantity: None,
            price: None,
            quote_quantity: None,
            asset: None,
            amount: None,
            address: None,
            network: None,
        }
    }

    /// The order's quote notional when the request itself determines it: `quote_quantity`,
    /// or `price × quantity`. `None` for a market order given in base quantity, which
    /// must be priced from the market.
    pub fn stated_notional(&self) -> Option<Decimal> {
        if let Some(q) = self.quote_quantity {
            return Some(q);
        }
        match (self.price, self.quantity) {
            (Some(p), Some(q)) => p.checked_mul(q),
            _ => None,
        }
    }
}
