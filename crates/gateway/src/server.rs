//! The gateway on one thread per core, as nginx runs one worker process per core.
//!
//! Each worker is a thread with a single-threaded tokio runtime and its own pool of
//! upstream connections; everything else (accounts and clients, policy counters, the
//! replay cache, the audit log) is shared. A request and the upstream connection it uses
//! then live on one thread, and no wake-up crosses to another.
//!
//! One listening socket, bound the ordinary way (no `SO_REUSEPORT`, so a second process
//! can never silently share the port), is accepted on by the first worker, which hands
//! the connections to the workers in turn. Bots keep their connections alive, so
//! accepting is rare and the hand-off costs nothing measurable.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::Gateway;

/// A running multi-worker gateway. [`Server::shutdown`] stops it gracefully; dropping it
/// stops it too, without waiting.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and starts `workers` worker threads (at least one) serving `gateway`.
    pub fn start(addr: SocketAddr, workers: usize, gateway: &Gateway) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (inboxes, connections): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel::<std::net::TcpStream>())
            .unzip();
        let mut acceptor = Some((listener, inboxes));
        let mut server = Server {
            addr,
            stop,
            workers: Vec::new(),
        };
        for (index, connections) in connections.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gateway = Arc::new(gateway.with_own_pool());
            // Registered here, so that a failure is the caller's error, not a silent worker.
            let acceptor = match acceptor.take() {
                Some((listener, inboxes)) => {
                    let _entered = runtime.enter();
                    Some((TcpListener::from_std(listener)?, inboxes))
                }
                None => None,
            };
            let stopped = stopped.clone();
            let worker = thread::Builder::new()
                .name(format!("keygate-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Some((listener, inboxes)) = acceptor {
                            tokio::spawn(accept(listener, inboxes, stopped.clone()));
                        }
                        serve_connections(gateway, connections, stopped).await;
                    });
                })?;
            server.workers.push(worker);
        }
        Ok(server)
    }

    /// The address the gateway listens on (the port chosen when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets every request in flight finish, and waits for the workers.
    pub fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        for worker in self.workers.drain(..) {
            worker
                .join()
                .map_err(|_| io::Error::other("a gateway worker panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Completes once a stop is requested or the [`Server`] is gone.
async fn stop_requested(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Accepts connections and deals them to the workers in turn, until a stop is requested.
async fn accept(
    listener: TcpListener,
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    stopped: watch::Receiver<bool>,
) {
    let mut next = 0;
    let mut listener = listener;
    let stop = stop_requested(stopped);
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut stop => return,
            accepted = Listener::accept(&mut listener) => accepted,
        };
        // A stream is tied to the runtime that registered it; the worker registers its own.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let worker = &inboxes[next % inboxes.len()];
        next += 1;
        let _ = worker.send(stream);
    }
}

/// Serves the connections dealt to one worker until a stop is requested, then lets each
/// finish the request it is on.
///
/// hyper directly, not `axum::serve`: the request path needs neither a router nor
/// extractors, and skipping them saves a boxed future and an extensions map per request.
async fn serve_connections(
    gateway: Arc<Gateway>,
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    stopped: watch::Receiver<bool>,
) {
    let mut open = JoinSet::new();
    let stop = stop_requested(stopped.clone());
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            stream = connections.recv() => stream,
        };
        let Some(stream) = stream else {
            // The acceptor is gone: no new connections, serve the open ones until stopped.
            (&mut stop).await;
            break;
        };
        while open.try_join_next().is_some() {}
        match TcpStream::from_std(stream).and_then(|s| Ok((s.peer_addr()?, s))) {
            Ok((peer, stream)) => {
                open.spawn(serve_connection(
                    gateway.clone(),
                    stream,
                    peer,
                    stopped.clone(),
                ));
            }
            Err(e) => {
                tracing::debug!(error = %e, "dropping a connection that closed before it was served")
            }
        }
    }
    while open.join_next().await.is_some() {}
}

/// HTTP/1.1 on one connection; on a stop, the request in flight finishes and the
/// connection closes.
async fn serve_connection(
    gateway: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    stopped: watch::Receiver<bool>,
) {
    // An answer goes out in one write; Nagle would only delay it.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request: http::Request<Incoming>| {
        let gateway = gateway.clone();
        async move {
            let response = crate::route(&gateway, peer, request.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let stop = stop_requested(stopped);
    tokio::pin!(stop);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = &mut stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
