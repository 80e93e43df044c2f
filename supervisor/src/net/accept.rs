//! The accept loop every listening port shares: the gateway's WebSocket/HTTP port and the
//! v3 canvas port. It accepts until the gateway drains (then the listener is dropped, so
//! new clients are refused at once and retry against the restarted gateway), makes each
//! connection's TLS handshake within the handshake timeout, and backs off on accept
//! errors (`EMFILE` and friends) instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::net::conn::Transport;

/// What a port does with each connection, plain or TLS alike.
pub trait Service: Copy + Send + 'static {
    fn serve<S: Transport>(
        self,
        app: Arc<App>,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send;
}

/// Accepts on `listener` until the gateway drains; `what` names the port in the log.
pub async fn accept_loop<Svc: Service>(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    svc: Svc,
    what: &'static str,
) {
    loop {
        tokio::select! {
            _ = app.draining.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    // Each spawned future is only what its branch needs: a plain
                    // connection's is the service's own.
                    match &tls {
                        Some(acceptor) => {
                            tokio::spawn(tls_then(Arc::clone(&app), tcp, peer, acceptor.clone(), svc));
                        }
                        None => {
                            tokio::spawn(svc.serve(Arc::clone(&app), tcp, peer));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(port = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A TLS connection: the handshake within the handshake timeout, then the service.
async fn tls_then<Svc: Service>(
    app: Arc<App>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    svc: Svc,
) {
    match tokio::time::timeout(app.config.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => svc.serve(app, tls, peer).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
