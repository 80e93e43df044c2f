//! A read budget on a socket, so a client cannot make us buffer a huge frame before it has
//! authenticated.
//!
//! tungstenite fixes its message-size limit when the WebSocket is created, but the limit
//! we want depends on the protocol version, known only after `connect`. So the socket is
//! wrapped: until the handshake completes, reading more than the budget stalls the read
//! and fires [`Budget::exceeded`], and the connection closes with 1009. tungstenite reads
//! only what it needs to finish the current message (plus at most one read buffer), so a
//! client that pipelines requests right after a small `connect` never trips it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Budget(Arc<Inner>);

struct Inner {
    limit: usize,
    used: AtomicUsize,
    active: AtomicBool,
    exceeded: Notify,
    tripped: AtomicBool,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
            active: AtomicBool::new(true),
            exceeded: Notify::new(),
            tripped: AtomicBool::new(false),
        }))
    }

    /// Lifts the budget (the handshake is done).
    pub fn disable(&self) {
        self.0.active.store(false, Ordering::Release);
    }

    /// Resolves once the budget has been exceeded.
    pub async fn exceeded(&self) {
        loop {
            let notified = self.0.exceeded.notified();
            if self.0.tripped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

pub struct BudgetStream<S> {
    inner: S,
    budget: Budget,
}

impl<S> BudgetStream<S> {
    pub fn new(inner: S, budget: Budget) -> Self {
        BudgetStream { inner, budget }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BudgetStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let b = Arc::clone(&self.budget.0);
        if !b.active.load(Ordering::Acquire) {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let used = b.used.load(Ordering::Relaxed);
        if used >= b.limit {
            if !b.tripped.swap(true, Ordering::AcqRel) {
                b.exceeded.notify_waiters();
            }
            // Stall: the connection task closes the socket with 1009.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        b.used.fetch_add(read, Ordering::Relaxed);
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BudgetStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
