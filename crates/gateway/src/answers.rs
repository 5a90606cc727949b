//! A bound on the memory held by exchange answers waiting to be written to clients.
//!
//! An answer is read whole from the exchange, then written to its client as fast as the
//! client takes it. A client must take it at [`server`](crate::server)'s minimum read
//! rate, but an answer can be tens of megabytes (Binance's `exchangeInfo` needs no key),
//! and many clients reading slowly at once would hold many of them. So large answers are
//! counted while they are held, and while the count is at its limit the requests that
//! bring large answers (public market data and signed reads) are refused before they are
//! sent; orders, cancels, withdrawals and transfers never are. A small answer (under
//! [`COUNTED_FROM`]) is not counted: the connection limit bounds those.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// Answers from this size on are counted.
pub(crate) const COUNTED_FROM: usize = 16 * 1024;

/// A large answer is handed to the connection this much at a time, so that the
/// connection asks for more only as its client takes it: the answer stays counted until
/// the last of it has been handed over.
const FRAME: usize = 64 * 1024;

/// The bytes of large answers held for clients, and their limit.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    held: AtomicUsize,
    limit: usize,
}

impl AnswerBudget {
    pub(crate) fn new(limit: usize) -> Arc<AnswerBudget> {
        Arc::new(AnswerBudget {
            held: AtomicUsize::new(0),
            limit,
        })
    }

    /// Whether large answers already hold the limit or more.
    pub(crate) fn is_spent(&self) -> bool {
        self.held.load(Ordering::Relaxed) >= self.limit
    }

    /// The body of an answer of `bytes`, counted until the connection has taken it all
    /// or is gone.
    pub(crate) fn body(self: &Arc<Self>, bytes: Bytes) -> Body {
        if bytes.len() < COUNTED_FROM {
            return Body::from(bytes);
        }
        let counted = bytes.len();
        self.held.fetch_add(counted, Ordering::Relaxed);
        Body::new(HeldAnswer {
            rest: bytes,
            counted,
            budget: Arc::clone(self),
        })
    }
}

/// A large answer, counted in its [`AnswerBudget`] until dropped.
struct HeldAnswer {
    rest: Bytes,
    counted: usize,
    budget: Arc<AnswerBudget>,
}

impl hyper::body::Body for HeldAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(FRAME);
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

impl Drop for HeldAnswer {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.counted, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    use super::*;

    #[tokio::test]
    async fn a_large_answer_is_counted_until_it_is_taken_in_frames() {
        let budget = AnswerBudget::new(300 * 1024);
        let small = budget.body(Bytes::from(vec![b'x'; COUNTED_FROM - 1]));
        assert_eq!(
            budget.held.load(Ordering::Relaxed),
            0,
            "small answers are not counted"
        );
        drop(small);

        let answer: Vec<u8> = (0..200 * 1024).map(|i| i as u8).collect();
        let first = budget.body(Bytes::from(answer.clone()));
        let second = budget.body(Bytes::from(answer.clone()));
        assert!(budget.is_spent(), "400 KiB held against a limit of 300");
        drop(second);
        assert!(!budget.is_spent());

        let mut body = first;
        assert_eq!(body.size_hint().exact(), Some(answer.len() as u64));
        let mut taken = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= FRAME);
            taken.extend_from_slice(&data);
        }
        assert_eq!(taken, answer);
        drop(body);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0);
    }
}
