//! Abuse and failing storage: rate limits per address and per key, lease requests and releases
//! forged in another key's name or replayed refused (without spending that key's rate), CORS
//! closed on requester endpoints, slow, silent and idle clients cut off, connections capped per
//! address, and a locked database or a full disk answered with 503 and recovered from, with
//! nothing already stored lost.
//!
//! The listener tests run the real `serve::serve` on 127.0.0.1 port 0.

use crate::common::{Contributor, Reply, TestRelay, assert_documented};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use glowworm_protocol::wire::{LeaseRequest, ReleaseReason};
use glowworm_relay::http::serve;
use glowworm_relay::{Config, ServeArgs, app};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The relay of `relay` served on a real listener; returns its address.
async fn listen(relay: &TestRelay) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app(relay.state.clone());
    let config = (*relay.state.config).clone();
    tokio::spawn(async move {
        serve::serve(listener, router, &config, std::future::pending()).await;
    });
    address
}

/// A client whose connections come from `local` (any 127.x.y.z is this machine).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn an_address_over_its_rate_gets_429_and_other_addresses_carry_on() {
    let relay = TestRelay::with_config(|c| {
        c.rate_per_address = 1;
        c.burst_per_address = 5;
    });
    let address = listen(&relay).await;
    let url = format!("http://{address}/v1/health");
    let greedy = client_from("127.0.0.1");
    for _ in 0..5 {
        assert_eq!(greedy.get(&url).send().await.unwrap().status(), 200);
    }
    let refused = greedy.get(&url).send().await.unwrap();
    let retry_after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(error_code(refused).await, (429, "rate_limited".into()));

    let other = client_from("127.0.0.2");
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_contributor_key_over_its_rate_gets_429_and_other_keys_carry_on() {
    let relay = TestRelay::with_config(|c| {
        c.rate_per_key = 1;
        c.burst_per_key = 3;
    });
    let greedy = Contributor::new();
    for _ in 0..3 {
        // No work is queued: 204, but the request counts.
        assert_eq!(
            greedy.lease_reply(&relay).await.status,
            StatusCode::NO_CONTENT
        );
    }
    greedy
        .lease_reply(&relay)
        .await
        .assert_error(429, "rate_limited");
    let other = Contributor::new();
    assert_eq!(
        other.lease_reply(&relay).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_lease_request_forged_in_another_keys_name_is_refused_and_spends_none_of_its_rate() {
    let relay = TestRelay::with_config(|c| {
        c.rate_per_key = 1;
        c.burst_per_key = 3;
        c.leases_per_new_key = 3;
    });
    relay.queue_demo_job().await; // four units
    let (victim, mallory) = (Contributor::new(), Contributor::new());
    for i in 0..10 {
        // Mallory signs with its own key but names the victim's...
        let mut forged = mallory.lease_request(&relay);
        forged.public_key = victim.public_key();
        // ...or writes the victim's request with a made-up signature.
        let made_up = LeaseRequest {
            public_key: victim.public_key(),
            signed_at_ms: relay.clock_now() + i,
            signature: format!("{i:02x}").repeat(64),
            adapter: None,
            partner: None,
            origin: None,
        };
        for body in [&forged, &made_up] {
            let reply = mallory.send_lease(&relay, body).await;
            reply.assert_error(403, "bad_signature");
            assert_documented(&reply, "post", "/v1/leases");
        }
    }
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM leases").await,
        0,
        "no lease was issued in the victim's name"
    );
    // The victim's own requests still have its whole burst, and then its limit.
    for _ in 0..3 {
        assert_eq!(victim.lease_reply(&relay).await.status, StatusCode::OK);
    }
    victim
        .lease_reply(&relay)
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn a_replayed_or_stale_lease_request_is_refused() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let captured = alice.lease_request(&relay);
    assert_eq!(
        alice.send_lease(&relay, &captured).await.status,
        StatusCode::OK
    );
    // The same signed body again, at once or a minute later, is a replay.
    for wait in [0, 60] {
        relay.advance(Duration::from_secs(wait));
        let replay = alice.send_lease(&relay, &captured).await;
        replay.assert_error(401, "replayed_request");
        assert_documented(&replay, "post", "/v1/leases");
    }
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM leases").await,
        1,
        "the replays leased nothing"
    );
    // A request signed anew is taken.
    assert_eq!(alice.lease_reply(&relay).await.status, StatusCode::OK);
    // Once the captured request is older than the window, it is refused as stale.
    relay.advance(Duration::from_secs(11 * 60));
    alice
        .send_lease(&relay, &captured)
        .await
        .assert_error(401, "stale_request");

    // Requests signed more than 10 minutes from the relay's clock, either way, are stale...
    const MINUTE_MS: i64 = 60 * 1000;
    let (late, early) = (Contributor::new(), Contributor::new());
    let behind = LeaseRequest::signed(
        &late.key,
        relay.clock_now() - 11 * MINUTE_MS,
        None,
        None,
        None,
    );
    let ahead = LeaseRequest::signed(
        &early.key,
        relay.clock_now() + 11 * MINUTE_MS,
        None,
        None,
        None,
    );
    for (who, body) in [(&late, &behind), (&early, &ahead)] {
        let reply = who.send_lease(&relay, body).await;
        reply.assert_error(401, "stale_request");
        assert_documented(&reply, "post", "/v1/leases");
    }
    // ...and within them a clock a little off is fine.
    let off = Contributor::new();
    let behind = LeaseRequest::signed(
        &off.key,
        relay.clock_now() - 9 * MINUTE_MS,
        None,
        None,
        None,
    );
    assert_eq!(off.send_lease(&relay, &behind).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_forged_release_is_refused_and_the_lease_stays_with_its_holder() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let (victim, mallory) = (Contributor::new(), Contributor::new());
    let lease = victim.lease(&relay).await.unwrap();
    let earlier = victim.lease(&relay).await.unwrap();
    assert_eq!(
        victim.release(&relay, &earlier, None).await.status,
        StatusCode::OK
    );
    let path = format!("/v1/leases/{}/release", lease.lease_id);

    // Mallory signs with its own key but names the victim's.
    let mut forged = mallory.release_request(&lease.lease_id, None);
    forged.public_key = victim.public_key();
    // The victim's signature of a release "stopped", sent as "gpu_failed" (which would charge
    // the unit's GPU budget).
    let mut altered = victim.release_request(&lease.lease_id, Some(ReleaseReason::Stopped));
    altered.reason = Some(ReleaseReason::GpuFailed);
    // The victim's signed release of its earlier lease, sent for this one.
    let moved = victim.release_request(&earlier.lease_id, None);
    for body in [&forged, &altered, &moved] {
        let reply = relay.post(&path, body).await;
        reply.assert_error(403, "bad_signature");
        assert_documented(&reply, "post", "/v1/leases/{lease_id}/release");
    }
    let mut garbled = victim.release_request(&lease.lease_id, None);
    garbled.signature = "not hex".into();
    let reply = relay.post(&path, &garbled).await;
    reply.assert_error(400, "bad_signature_format");
    assert_documented(&reply, "post", "/v1/leases/{lease_id}/release");

    // The lease is still the victim's, nothing was charged to its unit, and its result counts.
    let unit = |sql: &str| sql.replace("UNIT", &lease.unit_id.to_string());
    assert_eq!(
        relay
            .count(&unit(
                "SELECT COUNT(*) FROM leases WHERE unit_id = UNIT AND state = 'active'"
            ))
            .await,
        1
    );
    assert_eq!(
        relay
            .count(&unit(
                "SELECT gpu_ms + gpu_failures FROM units WHERE id = UNIT"
            ))
            .await,
        0
    );
    let receipt = victim.complete(&relay, &lease).await;
    assert_eq!(receipt.status, "verified");
    assert_eq!(receipt.credited, lease.flop as i64);
}

#[tokio::test]
async fn a_requester_key_over_its_rate_gets_429() {
    let relay = TestRelay::with_config(|c| {
        c.rate_per_key = 1;
        c.burst_per_key = 2;
    });
    let key = relay.create_api_key("lab", 100).await;
    let list = || {
        Request::get("/v1/jobs")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(relay.send(list()).await.status, StatusCode::OK);
    }
    relay.send(list()).await.assert_error(429, "rate_limited");
}

/// A CORS preflight from another site for `method path`.
async fn preflight(relay: &TestRelay, method: &str, path: &str) -> Reply {
    relay
        .send(
            Request::options(path)
                .header(header::ORIGIN, "https://blog.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
                .body(Body::empty())
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn requester_endpoints_are_closed_to_other_origins_and_contributor_endpoints_open() {
    let relay = TestRelay::new();
    let open = preflight(&relay, "POST", "/v1/leases").await;
    assert_eq!(
        open.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://blog.example"
    );
    for path in ["/v1/jobs", "/v1/jobs/1", "/v1/jobs/1/result"] {
        let closed = preflight(&relay, "GET", path).await;
        assert!(
            !closed
                .headers
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{path} must not be open to other origins: {:?}",
            closed.headers
        );
    }
    // A plain cross-origin GET of the requester API gets no CORS header either, so the
    // browser keeps the reply from the other site's page.
    let reply = relay
        .send(
            Request::get("/v1/jobs")
                .header(header::ORIGIN, "https://blog.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        !reply
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    reply.assert_error(401, "missing_api_key");
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    assert!(
        read.is_ok(),
        "the relay kept a stalled connection open for {limit:?}"
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        start.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let relay = TestRelay::with_config(|c| c.header_timeout_seconds = 1);
    let address = listen(&relay).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    // The relay still serves everyone else.
    let health = reqwest::get(format!("http://{address}/v1/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A TCP connection to `address` from the local address `local` (any 127.x.y.z).
async fn connect_from(local: &str, address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse().unwrap(), 0))
        .unwrap();
    socket.connect(address).await.unwrap()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let relay = TestRelay::with_config(|c| c.header_timeout_seconds = 1);
    let address = listen(&relay).await;
    // Not a byte: the relay cannot even tell HTTP/1 from HTTP/2.
    let mut silent = TcpStream::connect(address).await.unwrap();
    let (reply, after) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(reply, "");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&after),
        "closed after {after:?}"
    );
    // HTTP/2's preface and settings, and then no request.
    let mut h2 = TcpStream::connect(address).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut h2, Duration::from_secs(10)).await;
    assert!(after < Duration::from_secs(6), "closed after {after:?}");

    let health = reqwest::get(format!("http://{address}/v1/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn idle_connections_are_closed_after_their_last_request() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let relay = TestRelay::with_config(|c| {
        c.header_timeout_seconds = 2;
        c.idle_timeout_seconds = 1;
    });
    let address = listen(&relay).await;
    let health = || {
        Request::get("/v1/health")
            .header(header::HOST, "relay")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    // HTTP/2 with prior knowledge: its client answers the relay's pings, so only the idle
    // timeout can close it.
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let reply = sender.send_request(health()).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection stayed open for 10 s"
    );
    let after = since.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(6)).contains(&after),
        "closed after {after:?}"
    );

    // An HTTP/1 keep-alive connection between requests.
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let reply = sender.send_request(health()).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/1 connection stayed open for 10 s"
    );
    assert!(since.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused_and_others_carry_on() {
    const CAP: usize = 16;
    let relay = TestRelay::with_config(|c| {
        c.max_connections_per_address = CAP as u32;
        c.header_timeout_seconds = 60; // the flood's connections would stay, but for the cap
    });
    let address = listen(&relay).await;
    // One machine (127.0.0.1) opens 10 times its share of silent connections.
    let mut flood = Vec::new();
    for _ in 0..10 * CAP {
        flood.push(connect_from("127.0.0.1", address).await);
    }
    // Those over the cap are answered 429 and closed at once; the first CAP stay open.
    let outcomes = futures_util::future::join_all(flood.into_iter().map(|mut stream| async move {
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut received));
        match read.await {
            Ok(_) => Err(String::from_utf8_lossy(&received).into_owned()),
            Err(_) => Ok(stream),
        }
    }))
    .await;
    let mut refused = 0;
    let mut held = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(stream) => held.push(stream),
            Err(reply) => {
                assert!(
                    reply.is_empty() || reply.starts_with("HTTP/1.1 429"),
                    "refusal: {reply}"
                );
                if let Some((_, body)) = reply.split_once("\r\n\r\n") {
                    let body: Value = serde_json::from_str(body).unwrap();
                    assert_eq!(body["error"]["code"], "too_many_connections");
                }
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (CAP, 9 * CAP));

    // Another machine is served at once; this one only once it closes a connection.
    let started = Instant::now();
    let other = client_from("127.0.0.2");
    let url = format!("http://{address}/v1/health");
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let same = client_from("127.0.0.1");
    match same.get(&url).send().await {
        Ok(reply) => assert_eq!(reply.status(), 429),
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client_from("127.0.0.1").get(&url).send().await;
        if reply.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_gets_408() {
    let relay = TestRelay::with_config(|c| c.request_timeout_seconds = 1);
    let address = listen(&relay).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /v1/leases HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"public_key\":",
        )
        .await
        .unwrap();
    let (reply, after) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "reply: {reply}");
    assert!(reply.contains("\"request_timeout\""), "reply: {reply}");
    assert!(after < Duration::from_secs(5), "answered after {after:?}");
}

/// Queues a demo job and has `contributor` compute all of it, so there is something stored
/// to keep.
async fn earn_a_job(relay: &TestRelay, contributor: &Contributor) {
    relay.queue_demo_job().await;
    while let Some(lease) = contributor.lease(relay).await {
        assert!(contributor.complete(relay, &lease).await.credited > 0);
    }
}

#[tokio::test]
async fn a_locked_database_answers_503_and_the_relay_recovers() {
    let relay = TestRelay::new();
    let contributor = Contributor::new();
    earn_a_job(&relay, &contributor).await;
    let before = relay.footprint().await;

    // Another process holds the write lock (a backup tool, an operator's sqlite3 shell).
    let holder = rusqlite::Connection::open(&relay.state.config.database).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let reply = contributor.lease_reply(&relay).await;
    reply.assert_error(503, "unavailable");
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    // Reads go on meanwhile: the balance is still there.
    assert!(contributor.balance(&relay).await > 0);
    holder.execute_batch("COMMIT").unwrap();

    assert_eq!(
        relay.footprint().await,
        before,
        "nothing stored was lost or changed"
    );
    let balance = contributor.balance(&relay).await;
    earn_a_job(&relay, &contributor).await;
    assert!(
        contributor.balance(&relay).await > balance,
        "the relay recovered"
    );
}

/// A tmpfs of `bytes` mounted at `dir` for the life of the value (needs root).
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallDisk {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the disk with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0; 1]);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_and_the_relay_recovers_when_space_returns() {
    let scratch = tempfile::TempDir::new().unwrap();
    let Some(disk) = SmallDisk::mount(&scratch.path().join("disk"), 8 << 20) else {
        eprintln!(
            "SKIPPED: mounting a small tmpfs needs root (run the tests as root, as CI does, to \
             check the full-disk behaviour)"
        );
        return;
    };
    let database = disk.dir.join("relay.sqlite");
    let relay = TestRelay::with_config(|c: &mut Config| c.database = database.clone());
    let contributor = Contributor::new();
    earn_a_job(&relay, &contributor).await;
    let before = relay.footprint().await;
    let balance = contributor.balance(&relay).await;

    let filler = disk.fill();
    // A new job cannot be stored; every unit leased must still be answered properly.
    let job = glowworm_relay::work::demo::tick(
        &relay.state.db,
        &relay.state.config,
        relay.state.now_ms(),
    )
    .await;
    let error = job.expect_err("no room for a new job's blobs");
    assert_eq!(
        error.status_and_code(),
        (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        "{error}"
    );
    let reply = contributor.lease_reply(&relay).await;
    assert!(
        reply.status == StatusCode::NO_CONTENT || reply.status == StatusCode::SERVICE_UNAVAILABLE,
        "a lease on a full disk: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        reply.assert_error(503, "storage_unavailable");
    }
    assert_eq!(contributor.balance(&relay).await, balance, "reads go on");

    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        relay.footprint().await,
        before,
        "nothing stored was lost or changed"
    );
    earn_a_job(&relay, &contributor).await;
    assert!(contributor.balance(&relay).await > balance);
}

#[test]
fn connection_settings_come_in_layers_and_are_checked() {
    let defaults = Config::default();
    assert_eq!(
        (
            defaults.max_connections_per_address,
            defaults.idle_timeout_seconds,
            defaults.header_timeout_seconds
        ),
        (64, 30, 10)
    );
    let args = ServeArgs::try_parse_from(["serve", "--max-connections-per-address", "8"]).unwrap();
    let env = |name: &str| match name {
        "GLOWWORM_MAX_CONNECTIONS_PER_ADDRESS" => Some("4".to_string()),
        "GLOWWORM_IDLE_TIMEOUT_SECONDS" => Some("5".to_string()),
        _ => None,
    };
    let config = Config::load(&args, env).unwrap();
    assert_eq!(
        (
            config.max_connections_per_address,
            config.idle_timeout_seconds
        ),
        (8, 5),
        "flags beat env"
    );
    let args = ServeArgs::try_parse_from(["serve", "--idle-timeout-seconds", "0"]).unwrap();
    assert!(Config::load(&args, |_| None).is_err());
}
