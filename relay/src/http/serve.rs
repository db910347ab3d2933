//! The relay's listener: accepts TCP connections and serves the router on each.
//!
//! `axum::serve` would do, but it sets no deadline for a request's headers, so a client that
//! sends them a byte at a time could hold a connection forever. This loop uses hyper's own
//! connection builder and bounds what a connection may hold without working:
//!
//! - **Silent connections.** hyper's HTTP/1 header timeout only starts at the first byte, and
//!   the auto builder waits for the first bytes (to tell HTTP/1 from HTTP/2) without any
//!   deadline. Here a connection that has not delivered its first request's headers within
//!   `header_timeout_seconds` of being accepted is closed, whatever it sent.
//! - **Idle connections.** A connection with no request in progress (from the request's
//!   headers until the last byte of its reply) is closed `idle_timeout_seconds` after its last
//!   request; HTTP/2 gets a GOAWAY first. HTTP/1 keep-alive connections are closed sooner by
//!   hyper's header timeout, which runs while they wait for the next request. HTTP/2 pings
//!   detect peers that vanished while a request is in progress. Frames that are not requests
//!   (pings, settings) keep nothing open.
//! - **Connections per address.** At most `max_connections_per_address` connections at once
//!   from one IPv4 address or IPv6 /64 ([`address_bucket`]); more are answered 429
//!   `too_many_connections` (as HTTP/1, best effort) and closed as they are accepted, so one
//!   machine cannot use up `max_connections`. Off behind a trusted proxy (`trust_forwarded_for`),
//!   whose own address every connection has.
//! - **Connections in all.** At most `max_connections` at once; more wait in the kernel's
//!   accept queue.
//!
//! Each request gets its [`ConnectInfo`] (the client's address, for rate limits and replica
//! placement). On shutdown the loop stops accepting, tells every connection to finish the
//! requests it has (GOAWAY, or close after the reply) and waits for them, at most [`DRAIN`].

use crate::config::Config;
use crate::ids::address_bucket;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// How long requests in progress get to finish once shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(30);
/// HTTP/2: how often a connection with requests in progress is pinged, and how long the peer
/// has to answer before the connection is closed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection told to close (idle, or the relay stopping) has to do so once it has
/// no request in progress, before it is dropped (an HTTP/2 peer that never answers the GOAWAY's
/// ping, say).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The reply to a connection over the per-address cap, written (if the socket takes it at once)
/// before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 138\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this address has as many connections \
open as the relay allows one address; reuse one\"}}";

/// Open connections per address bucket.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; uncounted when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    bucket: IpAddr,
}

impl PerAddress {
    /// Counts a connection from `peer`, or `None` when its bucket already has `cap`.
    fn admit(self: &Arc<Self>, peer: IpAddr, cap: u32) -> Option<AddressSlot> {
        let bucket = address_bucket(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(bucket).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            bucket,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.bucket) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.bucket);
            }
        }
    }
}

/// What a connection's requests are doing: how many are in progress, and how many began.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Activity {
    in_progress: usize,
    begun: u64,
}

/// A request in progress on a connection, from its headers until its reply's body is sent
/// (or dropped).
struct InProgress(Arc<watch::Sender<Activity>>);

impl InProgress {
    fn begin(activity: &Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| {
            a.in_progress += 1;
            a.begun += 1;
        });
        InProgress(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.in_progress -= 1);
    }
}

/// A reply body that keeps its request counted as in progress until it is sent or dropped.
struct CountedBody {
    inner: Body,
    _request: InProgress,
}

impl HttpBody for CountedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once the connection has had no request in progress for `first` since it opened
/// (before its first request), or for `then` since its last request ended.
async fn idle(mut activity: watch::Receiver<Activity>, first: Duration, then: Duration) {
    let mut wait = first;
    loop {
        let seen = {
            let Ok(now) = activity.wait_for(|a| a.in_progress == 0).await else {
                return;
            };
            now.begun
        };
        let request_began = activity.wait_for(|a| a.in_progress > 0 || a.begun != seen);
        match tokio::time::timeout(wait, request_began).await {
            Err(_) => return,
            Ok(Err(_)) => return,
            Ok(Ok(_)) => wait = then,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout_seconds));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let builder = Arc::new(builder);
    let first_request = Duration::from_secs(config.header_timeout_seconds);
    let idle_after = Duration::from_secs(config.idle_timeout_seconds);
    let per_address_cap = match config.max_connections_per_address {
        0 => None,
        _ if config.trust_forwarded_for => None,
        cap => Some(cap),
    };
    let per_address = Arc::new(PerAddress::default());
    let max_connections = config.max_connections;
    let open = Arc::new(Semaphore::new(max_connections as usize));
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match per_address_cap {
            Some(cap) => match per_address.admit(peer.ip(), cap) {
                Some(slot) => Some(slot),
                None => {
                    refuse(stream, peer);
                    continue;
                }
            },
            None => None,
        };
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            first_request,
            idle_after,
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream, peer).await;
            drop(slot);
            drop(permit);
        });
    }

    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends.
    let drained = tokio::time::timeout(DRAIN, open.acquire_many(max_connections)).await;
    if drained.is_err() {
        tracing::warn!(
            "requests still in progress after {} s; stopping anyway",
            DRAIN.as_secs()
        );
    }
}

/// Answers a connection over its address's cap 429, if its socket takes the reply at once, and
/// closes it.
fn refuse(stream: TcpStream, peer: SocketAddr) {
    tracing::debug!("refused a connection from {peer}: too many from its address");
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
    drop(stream);
}

/// What serving one connection needs.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    first_request: Duration,
    idle_after: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(watch::Sender::new(Activity::default()));
        let requests = activity.clone();
        let router = self.router;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let counted = InProgress::begin(&requests);
            request.extensions_mut().insert(ConnectInfo(peer));
            let reply = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = reply.await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| {
                    Body::new(CountedBody {
                        inner,
                        _request: counted,
                    })
                }))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::pin!(connection);
        let mut stop = self.stop;
        let idle = idle(activity.subscribe(), self.first_request, self.idle_after);
        tokio::pin!(idle);

        let why = tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {peer}: {e}");
                }
                return;
            }
            () = &mut idle => "idle",
            _ = stop.wait_for(|stopping| *stopping) => "stopping",
        };
        tracing::debug!("closing the connection from {peer}: {why}");
        connection.as_mut().graceful_shutdown();
        // Requests in progress finish (each within its own deadline); then the connection gets
        // CLOSE_GRACE to close by itself, and is dropped if it has not.
        let mut requests = activity.subscribe();
        let closed = async {
            loop {
                let _ = requests.wait_for(|a| a.in_progress == 0).await;
                let more = requests.wait_for(|a| a.in_progress > 0);
                if tokio::time::timeout(CLOSE_GRACE, more).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {peer}: {e}");
                }
            }
            () = closed => tracing::debug!("dropped the connection from {peer}: it did not close"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_json_reply() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections");
    }

    #[test]
    fn connections_count_by_ipv4_address_and_ipv6_slash_64() {
        let table = Arc::new(PerAddress::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = table.admit(ip("203.0.113.7"), 2).unwrap();
        let _b = table.admit(ip("::ffff:203.0.113.7"), 2).unwrap();
        assert!(table.admit(ip("203.0.113.7"), 2).is_none());
        assert!(table.admit(ip("203.0.113.8"), 2).is_some());
        drop(a);
        assert!(table.admit(ip("203.0.113.7"), 2).is_some());
        let _c = table.admit(ip("2001:db8:1:2::1"), 1).unwrap();
        assert!(table.admit(ip("2001:db8:1:2:ffff::9"), 1).is_none());
        assert!(table.admit(ip("2001:db8:1:3::1"), 1).is_some());
        drop(_c);
        assert!(
            table.open.lock().unwrap().len() <= 3,
            "empty buckets are removed"
        );
    }
}
