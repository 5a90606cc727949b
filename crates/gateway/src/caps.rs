//! How the gateway shares each exchange's request weight: the caps at which public
//! data, signed reads and the lookups that price orders pause, and each client's share.

use keygate_exchanges::Adapter;

use crate::weight::{self, Cap, OverCap, Payer, Pool};
use crate::Gateway;

/// The request weight at which the ticker calls that price clients' orders pause: half
/// as far again past the cap that pauses public data (callers without a key cannot keep
/// orders from being priced), but not past the exchange's `ceiling`
/// ([`Adapter::pricing_weight_ceiling`]) unless the public cap itself is higher.
fn pricing_weight_cap(public_cap: u64, ceiling: u64) -> u64 {
    (public_cap.saturating_mul(3) / 2).min(public_cap.max(ceiling))
}

/// The public weight cap in `pool`: the configured one, or less where the caps derived
/// from it would pass what the exchange keeps of the pool for orders, cancels and
/// reconciliation ([`Adapter::shared_weight_limit`]). Lowered as a whole, so that
/// pricing's cap stays within the pool's limit and reads' below pricing's: no client's
/// reads can keep others' orders from being priced.
fn public_cap_in<A: Adapter>(gw: &Gateway, adapter: &A, pool: Pool<'_>) -> u64 {
    let configured = gw.limits.public_weight_cap;
    if gw.limits.spend_weight_kept_for_reconciliation {
        return configured;
    }
    let ceiling = adapter.pricing_weight_ceiling();
    public_cap_within(configured, adapter.shared_weight_limit(pool.name), ceiling)
}

/// `configured`, or the highest public cap below it whose pricing cap (under `ceiling`)
/// is at most `limit`.
fn public_cap_within(configured: u64, limit: u64, ceiling: u64) -> u64 {
    if pricing_weight_cap(configured, ceiling) <= limit {
        return configured;
    }
    // Pricing goes half as much again above the public cap, up to the ceiling, and no
    // further than the public cap above that.
    if limit >= ceiling {
        limit
    } else {
        (limit * 2 / 3).max(1)
    }
}

/// `client`, as its requests to `pool` are charged. Its share of the pool in a minute is
/// what the exchange allows the address ([`Adapter::weight_limit`]) less what public data
/// may spend and a tenth kept for the other clients, so that one client and every caller
/// without a key together cannot take the address to the exchange's limit (spot: 6000 -
/// 1200 - 600 = 4200 by default; USD-M 2400 - 1000 - 240 = 1160; `/sapi` 12000 - 1200 -
/// 1200 = 9600). Of that, half the cap for pricing orders, so that one client's orders
/// cannot keep everyone's from being priced. No bound when the gateway may spend the
/// weight kept for reconciliation ([`crate::ClientLimits::spend_weight_kept_for_reconciliation`]).
pub(crate) fn payer<'c, A: Adapter>(
    gw: &Gateway,
    adapter: &A,
    pool: Pool<'_>,
    client: &'c str,
) -> Payer<'c> {
    if gw.limits.spend_weight_kept_for_reconciliation {
        return Payer {
            client,
            share: u64::MAX,
            pricing_share: u64::MAX,
            read_share: u64::MAX,
        };
    }
    let limit = adapter.weight_limit(pool.name);
    let public_cap = public_cap_in(gw, adapter, pool);
    let ceiling = adapter.pricing_weight_ceiling();
    Payer {
        client,
        share: limit
            .saturating_sub(public_cap)
            .saturating_sub(limit / CLIENTS_KEPT_SHARE),
        pricing_share: pricing_weight_cap(public_cap, ceiling) / 2,
        read_share: client_read_share(public_cap, ceiling),
    }
}

/// The most one client's signed reads and test orders may weigh in a pool in a minute:
/// the cap of every client's reads ([`signed_read_weight_cap`]) less a fifth kept for
/// the other clients' reads (1200 of 1500 by default), so that one client reading in a
/// loop leaves the others some (found by review: a read-only key polling the account
/// paused every client's reads for the rest of the minute).
fn client_read_share(public_cap: u64, ceiling: u64) -> u64 {
    let cap = reads_cap(public_cap, ceiling);
    cap - cap / 5
}

/// The part of the exchange's limit no one client's requests may reach into (a tenth):
/// kept for the other clients' orders and cancels.
const CLIENTS_KEPT_SHARE: u64 = 10;

/// Why `payer`'s request is refused for its share of `pool`.
pub(crate) fn over_share(payer: Payer<'_>, over: weight::OverShare, pool: Pool<'_>) -> String {
    let client = payer.client;
    let what = match over.part {
        weight::SharePart::Requests => format!("client {client}'s requests this minute"),
        weight::SharePart::Reads => {
            format!("client {client}'s signed reads and test orders this minute")
        }
        weight::SharePart::Pricing => {
            format!("the ticker and book lookups that priced client {client}'s orders this minute")
        }
    };
    format!(
        "keygate: {what} are estimated at {} request weight of the exchange's {} limit, and \
         one client may use at most {} for them (the rest is kept for the account's other \
         clients); wait for the minute to turn",
        over.spent, pool.name, over.share
    )
}

/// The request weight at which signed reads to `adapter`'s exchange pause, where public
/// data pauses at `public_cap`: halfway from there to the cap that pauses pricing, so
/// that neither callers without a key nor a client's reads can keep other clients'
/// orders from being priced (1500 by default on Binance).
pub fn signed_read_weight_cap<A: Adapter>(adapter: &A, public_cap: u64) -> u64 {
    reads_cap(public_cap, adapter.pricing_weight_ceiling())
}

/// [`signed_read_weight_cap`], under the exchange's pricing `ceiling`.
fn reads_cap(public_cap: u64, ceiling: u64) -> u64 {
    let pricing = pricing_weight_cap(public_cap, ceiling);
    public_cap + pricing.saturating_sub(public_cap) / 2
}

/// The calls keygate holds back for the weight they would spend, by the cap they stop
/// at, lowest first: callers without a key cannot keep clients' reads from going, nor
/// any client's reads other clients' orders from being priced.
#[derive(Clone, Copy)]
pub(crate) enum HeldBack {
    PublicData,
    SignedReads,
    Pricing,
}

/// Where `calls` stop in `pool`: at their cap ([`public_cap_in`],
/// [`signed_read_weight_cap`], [`pricing_weight_cap`]) of the weight held-back calls
/// spend, and, by the exchange's count of the pool's weight whoever spent it, at its
/// limit less the tenth kept for the clients' orders and cancels, and less again as
/// much as their cap is below pricing's, so that they keep their order there too (spot:
/// public data from 4800 of 6000, reads from 5100, pricing from 5400). No cap on the
/// pool's count when the gateway may spend the weight kept for reconciliation
/// ([`crate::ClientLimits::spend_weight_kept_for_reconciliation`]).
pub(crate) fn cap_for<A: Adapter>(
    gw: &Gateway,
    adapter: &A,
    pool: Pool<'_>,
    calls: HeldBack,
) -> Cap {
    let public = public_cap_in(gw, adapter, pool);
    let ceiling = adapter.pricing_weight_ceiling();
    let pricing = pricing_weight_cap(public, ceiling);
    let held_back = match calls {
        HeldBack::PublicData => public,
        HeldBack::SignedReads => reads_cap(public, ceiling),
        HeldBack::Pricing => pricing,
    };
    if gw.limits.spend_weight_kept_for_reconciliation {
        return Cap {
            held_back,
            pool: u64::MAX,
        };
    }
    let limit = adapter.weight_limit(pool.name);
    Cap {
        held_back,
        pool: limit
            .saturating_sub(limit / CLIENTS_KEPT_SHARE)
            .saturating_sub(pricing.saturating_sub(held_back)),
    }
}

/// Why `what` (a public call or a signed read; "… is" or "… are") is refused for the
/// weight it would spend: the rest is kept for `kept_for`.
pub(crate) fn weight_paused(what: &str, over: OverCap, kept_for: &str) -> String {
    match over {
        OverCap::HeldBack { spent, cap } => format!(
            "keygate: {what} paused: public market data, signed reads and the lookups that \
             price orders are counted at {spent} request weight this minute (keygate's \
             estimates of them, or the exchange's count where lower), at or past keygate's \
             cap of {cap} for them (the rest is kept for {kept_for})"
        ),
        OverCap::Pool {
            reported,
            reserved,
            cap,
        } => format!(
            "keygate: {what} paused: the exchange reports {reported} request weight used \
             this minute, and calls without an answer yet (or without a report of their \
             weight) count {reserved} more, at or past {cap}, past which the rest of the \
             exchange's limit is kept for {kept_for}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's.
    const CEILING: u64 = 2_000;

    /// Found by review: clamping each cap to a pool's limit on its own made pricing's and
    /// reads' equal on USD-M (1500 both), so a client's reads could keep other clients'
    /// orders from being priced. Lowered together, they keep their order.
    #[test]
    fn caps_lowered_for_a_pool_keep_their_order() {
        for limit in [1_500, 2_700, 5_500, u64::MAX] {
            for configured in [1, 100, 1_000, 1_200, 1_800, 2_000, 2_700, 5_000, 100_000] {
                let public = public_cap_within(configured, limit, CEILING);
                let reads = reads_cap(public, CEILING);
                let pricing = pricing_weight_cap(public, CEILING);
                let at = format!("limit {limit}, configured {configured}");
                assert!(public <= configured && pricing <= limit, "{at}");
                assert!(public <= reads && reads <= pricing, "{at}");
                if pricing_weight_cap(configured, CEILING) > pricing && public < CEILING {
                    assert!(reads < pricing, "{at}: {reads} {pricing}");
                }
            }
        }
        assert_eq!(public_cap_within(1_200, 1_500, CEILING), 1_000);
        assert_eq!(public_cap_within(1_200, 2_700, CEILING), 1_200);
    }

    #[test]
    fn signed_reads_pause_between_public_data_and_pricing() {
        let binance = keygate_exchanges::Binance;
        assert_eq!(binance.pricing_weight_ceiling(), CEILING);
        let caps = |public| {
            let pricing = pricing_weight_cap(public, CEILING);
            (signed_read_weight_cap(&binance, public), pricing)
        };
        assert_eq!(caps(1200), (1500, 1800));
        assert_eq!(caps(45), (56, 67));
        // Pricing stops at 2000, and reads halfway to it.
        assert_eq!(caps(1600), (1800, 2000));
        // A public cap above that is every cap.
        assert_eq!(caps(3000), (3000, 3000));
    }
}
