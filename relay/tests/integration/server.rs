//! The relay as people run it: the real binary on a real socket, the static page, and CORS.

use crate::common::TestRelay;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{KernelSource, Lease, LeaseRequest, ResultReceipt, ResultSubmission};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a small page with a wasm module into `www`.
fn write_page(www: &std::path::Path) {
    std::fs::create_dir_all(www.join("pkg")).unwrap();
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><title>Glowworm</title>",
    )
    .unwrap();
    std::fs::write(www.join("pkg/glowworm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
}

/// The relay binary, with no GLOWWORM_* setting from the test's environment.
fn relay_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glowworm-relay"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("GLOWWORM_")) {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "warn");
    command
}

#[tokio::test]
async fn the_binary_serves_a_contributor_over_real_http_and_stops_on_sigterm() {
    let dir = tempfile::TempDir::new().unwrap();
    let www = dir.path().join("www");
    write_page(&www);
    let database = dir.path().join("data/relay.sqlite");

    // The operator grants the demo budget, which pays for the demo generator's jobs.
    let granted = relay_command()
        .args(["budget", "grant", "demo", "1000000000", "--database"])
        .arg(&database)
        .output()
        .unwrap();
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert!(String::from_utf8_lossy(&granted.stderr).contains("its budget is now 1000000000"));

    let mut child = relay_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--demo-m", "64"])
        .args(["--demo-n", "128", "--demo-k", "32"])
        .arg("--database")
        .arg(&database)
        .arg("--www-dir")
        .arg(&www)
        .env("GLOWWORM_LEASE_SECONDS", "7")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // The one line on stdout names the bound address.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line_tx.send(line).unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    let line = line_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the relay announces its address");
    let base = line
        .trim_end()
        .strip_prefix("Glowworm relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "{base}"
    );
    assert!(
        database.exists(),
        "the database and its directory were created"
    );

    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("{base}/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // The demo generator queues work within a second or so.
    let key = ContributorKey::generate().unwrap();
    let started = Instant::now();
    let lease: Lease = loop {
        let reply = http
            .post(format!("{base}/v1/leases"))
            .json(&LeaseRequest::signed(
                &key,
                glowworm_relay::Clock::now_ms(&glowworm_relay::SystemClock),
                None,
                None,
                None,
            ))
            .send()
            .await
            .unwrap();
        if reply.status() == StatusCode::OK {
            break reply.json().await.unwrap();
        }
        assert_eq!(reply.status(), StatusCode::NO_CONTENT);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no demo job appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lease_ms = lease.deadline_unix_ms - now_ms;
    assert!(
        (4_000..=7_000).contains(&lease_ms),
        "GLOWWORM_LEASE_SECONDS=7 reached the relay: {lease_ms} ms left"
    );
    assert_eq!(
        (
            lease.work.shape().unwrap().m,
            lease.work.shape().unwrap().n,
            lease.work.shape().unwrap().k
        ),
        (64, 64, 32)
    );

    let kernel: KernelSource = http
        .get(format!("{base}/v1/kernels/{}", lease.kernel.hash))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kernel.hash, matmul::TILED.hash());
    let mut inputs = Vec::new();
    for blob in &lease.inputs {
        let reply = http
            .get(format!("{base}/v1/blobs/{}", blob.hash))
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(reply.headers()["content-type"], "application/octet-stream");
        inputs.push(bytes_to_f32s(&reply.bytes().await.unwrap()).unwrap());
    }
    let output = f32s_to_bytes(&matmul::reference(
        &inputs[0],
        &inputs[1],
        lease.work.shape().unwrap(),
    ));
    let submission = ResultSubmission {
        lease_id: lease.lease_id.clone(),
        unit_id: lease.unit_id,
        public_key: key.public_hex(),
        output: to_base64(&output),
        signature: key.sign_result(lease.unit_id, &lease.lease_id, &kernel.hash, &output),
    };
    let reply = http
        .post(format!("{base}/v1/results"))
        .json(&submission)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let receipt: ResultReceipt = reply.json().await.unwrap();
    assert_eq!(receipt.status, "verified");
    assert_eq!(receipt.credited, 2 * 64 * 64 * 32);
    assert_eq!(receipt.balance, receipt.credited);
    // The books balance, as the operator's audit finds them.
    let audit = relay_command()
        .args(["budget", "audit", "--database"])
        .arg(&database)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    // The page and its module are served too.
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Glowworm"));
    let module = http
        .get(format!("{base}/pkg/glowworm_bg.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(module.headers()["content-type"], "application/wasm");

    // SIGTERM stops it cleanly.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "relay did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert_eq!(reader.join().unwrap(), "", "exactly one line on stdout");
}

#[tokio::test]
async fn the_page_is_served_from_www_dir_with_wasm_as_application_wasm() {
    let page = tempfile::TempDir::new().unwrap();
    write_page(page.path());
    let relay = TestRelay::with_config(|c| c.www_dir = Some(page.path().to_path_buf()));
    let index = relay.get("/").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&index.body).contains("<title>Glowworm</title>"));
    let module = relay.get("/pkg/glowworm_bg.wasm").await;
    assert_eq!(module.status, StatusCode::OK);
    assert_eq!(module.headers["content-type"], "application/wasm");
    assert_eq!(module.body, b"\0asm\x01\0\0\0");
    assert_eq!(relay.get("/missing.js").await.status, StatusCode::NOT_FOUND);
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/v1/results")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn any_origin_may_call_the_api_unless_origins_are_listed() {
    let open = TestRelay::new();
    let reply = open.send(preflight("https://somewhere.example")).await;
    assert_eq!(reply.status, StatusCode::OK);
    // The caller's origin is echoed (with Vary: Origin), since the requester API answers no
    // other origin and a bare "*" could not say so per path.
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://somewhere.example"
    );
    assert!(reply.headers["vary"].to_str().unwrap().contains("origin"));
    let methods = reply.headers["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let simple = open
        .send(
            Request::get("/v1/health")
                .header("origin", "https://somewhere.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        simple.headers["access-control-allow-origin"],
        "https://somewhere.example"
    );

    let closed = TestRelay::with_config(|c| c.cors_origins = vec!["https://ok.example".into()]);
    let allowed = closed.send(preflight("https://ok.example")).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://ok.example"
    );
    let refused = closed.send(preflight("https://evil.example")).await;
    assert!(!refused.headers.contains_key("access-control-allow-origin"));
}
