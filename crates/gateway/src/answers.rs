//! A bound on the memory held by exchange answers waiting to be written to clients.
//!
//! An answer is read whole from the exchange, then written to its client as fast as the
//! client takes it. A client must take it at [`server`](crate::server)'s minimum read
//! rate, but an answer can be tens of megabytes (Binance's `exchangeInfo` needs no key),
//! and many clients reading slowly at once would hold many of them for a long time. So
//! large answers are counted from when they arrive until their last byte is written (or
//! their connection is gone), and while the count is at its limit the requests that may
//! bring one are refused before they are sent, whatever the size of their own answer:
//!
//! - public market data, while all large answers held reach the limit;
//! - signed reads, while those held for signed requests alone reach it, so that callers
//!   without a key, reading public answers slowly, cannot hold back the bots' reads.
//!
//! Orders, cancels, withdrawals and transfers are never refused for it: their answers are
//! small, and a cancel must always go through.
//!
//! The limit is checked before a request is sent and the answer counted when it comes, so
//! requests sent at the same moment all pass: what it bounds is answers piling up over
//! time for slow readers. A burst is bounded by the connection limits and the largest
//! answer keygate reads (`wire::MAX_ANSWER_BODY_BYTES`, 64 MiB). A small answer (under [`COUNTED_FROM`]) is not counted:
//! the connection limits bound those.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;

/// Answers from this size on are counted.
pub(crate) const COUNTED_FROM: usize = 16 * 1024;

/// Whose answer: a public call's, or a signed request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Public,
    Signed,
}

impl Caller {
    /// As the metrics name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Caller::Public => "public",
            Caller::Signed => "signed",
        }
    }
}

/// What the admin listener reads of the answers held: the bytes of large answers not yet
/// written to their clients, by caller.
#[derive(Clone, Debug)]
pub struct AnswersHeld(pub(crate) Arc<AnswerBudget>);

impl AnswersHeld {
    /// `(caller, bytes)` for public calls and signed requests.
    pub fn bytes(&self) -> [(&'static str, usize); 2] {
        self.0.held_now().map(|(caller, n)| (caller.as_str(), n))
    }
}

/// The bytes of large answers held for clients, and their limit.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    public: AtomicUsize,
    signed: AtomicUsize,
    limit: usize,
}

impl AnswerBudget {
    pub(crate) fn new(limit: usize) -> Arc<AnswerBudget> {
        Arc::new(AnswerBudget {
            public: AtomicUsize::new(0),
            signed: AtomicUsize::new(0),
            limit,
        })
    }

    fn held(&self, caller: Caller) -> &AtomicUsize {
        match caller {
            Caller::Public => &self.public,
            Caller::Signed => &self.signed,
        }
    }

    /// The bytes of large answers held now, for public calls and for signed requests.
    pub(crate) fn held_now(&self) -> [(Caller, usize); 2] {
        [Caller::Public, Caller::Signed]
            .map(|caller| (caller, self.held(caller).load(Ordering::Relaxed)))
    }

    /// Whether a request of `caller` that may bring a large answer is refused now.
    pub(crate) fn refuses(&self, caller: Caller) -> bool {
        let signed = self.signed.load(Ordering::Relaxed);
        match caller {
            Caller::Signed => signed >= self.limit,
            Caller::Public => {
                signed.saturating_add(self.public.load(Ordering::Relaxed)) >= self.limit
            }
        }
    }

    /// The body of an answer of `bytes` for `caller`, counted until the last reference
    /// to its bytes is dropped: once the connection has written all of it, or is gone.
    pub(crate) fn body(self: &Arc<Self>, bytes: Bytes, caller: Caller) -> Body {
        if bytes.len() < COUNTED_FROM {
            return Body::from(bytes);
        }
        self.held(caller).fetch_add(bytes.len(), Ordering::Relaxed);
        Body::from(Bytes::from_owner(HeldAnswer {
            bytes,
            caller,
            budget: Arc::clone(self),
        }))
    }
}

/// A large answer's bytes, counted in its [`AnswerBudget`] until dropped.
struct HeldAnswer {
    bytes: Bytes,
    caller: Caller,
    budget: Arc<AnswerBudget>,
}

impl AsRef<[u8]> for HeldAnswer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for HeldAnswer {
    fn drop(&mut self) {
        self.budget
            .held(self.caller)
            .fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn held(budget: &AnswerBudget) -> (usize, usize) {
        (
            budget.public.load(Ordering::Relaxed),
            budget.signed.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn a_large_answer_is_counted_until_its_last_byte_is_let_go() {
        let budget = AnswerBudget::new(300 * 1024);
        drop(budget.body(Bytes::from(vec![b'x'; COUNTED_FROM - 1]), Caller::Public));
        assert_eq!(held(&budget), (0, 0), "small answers are not counted");

        let answer: Vec<u8> = (0..200 * 1024).map(|i| i as u8).collect();
        let public = budget.body(Bytes::from(answer.clone()), Caller::Public);
        let signed = budget.body(Bytes::from(answer.clone()), Caller::Signed);
        assert_eq!(held(&budget), (answer.len(), answer.len()));
        assert_eq!(
            AnswersHeld(Arc::clone(&budget)).bytes(),
            [("public", answer.len()), ("signed", answer.len())]
        );
        // Public data is refused past the limit of all answers held; signed reads only
        // past that of signed answers.
        assert!(budget.refuses(Caller::Public));
        assert!(!budget.refuses(Caller::Signed));
        drop(public);
        assert!(!budget.refuses(Caller::Public));

        // Taken out of its body, the answer stays counted as long as its bytes are held
        // (a connection's write queue holds them until they are written).
        let bytes = signed.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, answer);
        assert_eq!(held(&budget), (0, answer.len()));
        let tail = bytes.slice(answer.len() - 10..);
        drop(bytes);
        assert_eq!(held(&budget), (0, answer.len()));
        drop(tail);
        assert_eq!(held(&budget), (0, 0));
    }
}
