//! What operators run and watch: the relay binary started outside the repository serves the page
//! it carries; `/metrics` on the metrics listener moves with real traffic; JSON log lines;
//! `/healthz` and `/readyz`.

use crate::common::TestRelay;
use axum::http::StatusCode;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{Lease, LeaseRequest, ResultSubmission};
use glowworm_relay::work::assembly::Assembler;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The relay binary, started in `cwd` with `args` (and a database in `cwd`); killed when dropped.
struct Binary {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    base: String,
}

impl Binary {
    fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_glowworm-relay"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("GLOWWORM_")) {
            command.env_remove(name);
        }
        command.env("RUST_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .current_dir(cwd)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--database", "relay.sqlite"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut binary = Binary {
            child,
            stdout,
            stderr,
            base: String::new(),
        };
        let first = binary.stdout_line();
        binary.base = first
            .strip_prefix("Glowworm relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        binary
    }

    fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(Duration::from_secs(60))
            .expect("the relay writes a line on stdout")
    }

    /// The stderr lines written so far, waiting up to 10 s for the first.
    fn stderr_lines(&self) -> Vec<String> {
        let mut found = vec![
            self.stderr
                .recv_timeout(Duration::from_secs(10))
                .expect("the relay logs a line"),
        ];
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(300)) {
            found.push(line);
        }
        found
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each line `from` writes, as it comes.
fn lines(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

#[tokio::test]
async fn a_relay_started_anywhere_serves_the_page_it_was_built_with() {
    let cwd = tempfile::TempDir::new().unwrap();
    assert!(!cwd.path().join("www").exists());
    let relay = Binary::start(cwd.path(), &["--no-demo"], &[]);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", relay.base)).send();

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    let on_disk = std::fs::read_to_string(repo_www().join("index.html")).unwrap();
    assert_eq!(html, on_disk, "the page is the copy of www/index.html");

    let widget = get("/widget.html").await.unwrap();
    assert_eq!(widget.status(), StatusCode::OK);
    let script = get("/app.js").await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(script.headers().get("cache-control").is_none());
    let etag = script.headers()["etag"].clone();
    let again = http
        .get(format!("{}/app.js", relay.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(get("/nothing.js").await.unwrap().status(), 404);

    // Gzipped for clients that accept it, with a tag of its own.
    let zipped = http
        .get(format!("{}/app.js", relay.base))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "accept-encoding");
    assert_ne!(zipped.headers()["etag"], script.headers()["etag"]);
    let compressed = zipped.bytes().await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut plain,
    )
    .unwrap();
    let on_disk = std::fs::read_to_string(repo_www().join("app.js")).unwrap();
    assert_eq!(plain, on_disk);
    assert!(compressed.len() < on_disk.len() / 2);
    let head = http
        .head(format!("{}/app.js", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        on_disk.len().to_string()
    );

    // The module: present when www/pkg was built before the relay (cargo xtask), else a 503
    // that says what to do. The relay is rebuilt whenever www/ changes, so the two agree.
    let module = get("/pkg/glowworm.js").await.unwrap();
    if repo_www().join("pkg/glowworm.js").is_file() {
        assert_eq!(module.status(), StatusCode::OK);
        let wasm = std::fs::read_dir(repo_www().join("pkg"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|name| name.ends_with(".wasm"))
            .expect("a wasm module in www/pkg");
        let wasm = get(&format!("/pkg/{wasm}")).await.unwrap();
        assert_eq!(wasm.status(), StatusCode::OK);
        assert_eq!(wasm.headers()["content-type"], "application/wasm");
    } else {
        assert_eq!(module.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            module
                .text()
                .await
                .unwrap()
                .contains("built without www/pkg")
        );
        let logged = relay.stderr_lines().join("\n");
        assert!(logged.contains("built without www/pkg"), "{logged}");
    }
}

fn repo_www() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// The value of the series line `name` (with its labels) in `text`, 0 when absent.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_move_with_a_lease_a_valid_and_an_invalid_result() {
    let cwd = tempfile::TempDir::new().unwrap();
    let relay = Binary::start(
        cwd.path(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--demo-m",
            "64",
            "--demo-n",
            "128",
            "--demo-k",
            "32",
        ],
        &[],
    );
    let second = relay.stdout_line();
    let metrics_url = second
        .strip_prefix("Metrics on ")
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"))
        .to_string();
    let http = reqwest::Client::new();
    let scrape = || async {
        let reply = http.get(&metrics_url).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        assert!(
            reply.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        reply.text().await.unwrap()
    };
    // Not on the public listener.
    let public = http
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .unwrap();
    assert_ne!(public.status(), StatusCode::OK);

    // Two leases of the demo job (a new key may hold two).
    let key = ContributorKey::generate().unwrap();
    let mut leases: Vec<Lease> = Vec::new();
    let started = Instant::now();
    while leases.len() < 2 {
        let reply = http
            .post(format!("{}/v1/leases", relay.base))
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
        match reply.status() {
            StatusCode::OK => leases.push(reply.json().await.unwrap()),
            StatusCode::NO_CONTENT => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("lease answered {other}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no demo work");
    }
    let text = scrape().await;
    assert_eq!(value(&text, "glowworm_leases_issued_total"), 2.0);
    assert_eq!(value(&text, "glowworm_leases_in_flight"), 2.0, "{text}");
    assert!(text.contains("glowworm_queue_depth_units{kind=\"matmul\"}"));
    assert!(text.contains("glowworm_queue_depth_units{kind=\"kernel\"} 0"));

    // One right answer, one wrong one.
    let mut outputs = Vec::new();
    for lease in &leases {
        let mut inputs = Vec::new();
        for blob in &lease.inputs {
            let bytes = http
                .get(format!("{}/v1/blobs/{}", relay.base, blob.hash))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            inputs.push(bytes_to_f32s(&bytes).unwrap());
        }
        let shape = lease.work.shape().unwrap();
        outputs.push(f32s_to_bytes(&matmul::reference(
            &inputs[0], &inputs[1], shape,
        )));
    }
    for byte in outputs[1].iter_mut().step_by(4) {
        *byte ^= 0x40;
    }
    let mut statuses = Vec::new();
    for (lease, output) in leases.iter().zip(&outputs) {
        let submission = ResultSubmission {
            lease_id: lease.lease_id.clone(),
            unit_id: lease.unit_id,
            public_key: key.public_hex(),
            output: to_base64(output),
            signature: key.sign_result(lease.unit_id, &lease.lease_id, &lease.kernel.hash, output),
        };
        let reply = http
            .post(format!("{}/v1/results", relay.base))
            .json(&submission)
            .send()
            .await
            .unwrap();
        statuses.push(reply.status());
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY]);

    let text = scrape().await;
    assert_eq!(
        value(&text, "glowworm_results_total{verdict=\"valid\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "glowworm_results_total{verdict=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "glowworm_results_total{verdict=\"pending\"}"),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "glowworm_result_refusals_total{reason=\"verification_failed\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, "glowworm_leases_in_flight"), 0.0);
    let results = |status: &str| {
        value(
            &text,
            &format!(
                "glowworm_http_request_duration_seconds_count{{method=\"POST\",route=\"/v1/results\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!((results("2xx"), results("4xx")), (1.0, 1.0), "{text}");
    // Route templates, never the paths asked for.
    assert!(text.contains("route=\"/v1/blobs/{hash}\""));
    assert!(!text.contains(&leases[0].inputs[0].hash.to_string()));
    assert!(value(&text, "glowworm_db_commit_duration_seconds_count") >= 3.0);
}

#[tokio::test]
async fn log_lines_are_json_with_the_flag_and_plain_text_without_it() {
    let cwd = tempfile::TempDir::new().unwrap();
    let relay = Binary::start(cwd.path(), &["--no-demo", "--log-format", "json"], &[]);
    let logged = relay.stderr_lines();
    for line in &logged {
        let line: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(line["level"].is_string() && line["timestamp"].is_string());
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        logged.iter().any(|l| l.contains("wallet sign-in for")),
        "{logged:?}"
    );
    drop(relay);

    let cwd = tempfile::TempDir::new().unwrap();
    let relay = Binary::start(
        cwd.path(),
        &["--no-demo"],
        &[("GLOWWORM_LOG_FORMAT", "text")],
    );
    let logged = relay.stderr_lines();
    assert!(logged.iter().any(|l| l.contains("wallet sign-in for")));
    assert!(
        logged
            .iter()
            .all(|l| !l.contains('\x1b') && !l.starts_with('{')),
        "plain text, no colour off a terminal: {logged:?}"
    );
    drop(relay);

    let cwd = tempfile::TempDir::new().unwrap();
    let relay = Binary::start(
        cwd.path(),
        &["--no-demo"],
        &[("GLOWWORM_LOG_FORMAT", "json")],
    );
    let first = relay.stderr_lines().remove(0);
    serde_json::from_str::<serde_json::Value>(&first).expect("GLOWWORM_LOG_FORMAT=json");
}

#[tokio::test]
async fn healthz_is_live_and_readyz_checks_the_database_and_its_threads() {
    let relay = TestRelay::new();
    let live = relay.get("/healthz").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json::<serde_json::Value>()["status"], "ok");
    let ready = relay.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    let body: serde_json::Value = ready.json();
    assert_eq!(body["status"], "ready");
    for check in ["database", "writer", "assembler"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    assert_eq!(ready.headers["cache-control"], "no-store");

    // A relay whose assembler is not running is not ready.
    let mut state = relay.state.clone();
    state.assembler = Assembler::default();
    let app = glowworm_relay::app(state);
    let reply = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(reply.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["assembler"], "not running");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn queue_depth_and_leases_in_flight_are_read_from_the_database_when_scraped() {
    let relay = TestRelay::new();
    let metrics = glowworm_relay::http::ops::metrics_router(relay.state.clone());
    let scrape = || async {
        let reply = tower::ServiceExt::oneshot(
            metrics.clone(),
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        let body = axum::body::to_bytes(reply.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let depth = |text: &str| value(text, "glowworm_queue_depth_units{kind=\"matmul\"}");
    assert_eq!(depth(&scrape().await), 0.0);
    relay.queue_demo_job().await; // four units
    let text = scrape().await;
    assert_eq!(depth(&text), 4.0, "{text}");
    assert_eq!(value(&text, "glowworm_leases_in_flight"), 0.0);
    let contributor = crate::common::Contributor::new();
    let lease = contributor.lease(&relay).await.unwrap();
    let text = scrape().await;
    assert_eq!(depth(&text), 3.0);
    assert_eq!(value(&text, "glowworm_leases_in_flight"), 1.0);
    contributor.complete(&relay, &lease).await;
    let text = scrape().await;
    assert_eq!(value(&text, "glowworm_leases_in_flight"), 0.0);
    assert_eq!(depth(&text), 3.0);
}

#[tokio::test]
async fn a_relay_whose_writer_cannot_commit_is_not_ready_until_it_can() {
    let relay = TestRelay::new();
    assert_eq!(relay.get("/readyz").await.status, StatusCode::OK);
    // Another process holds the write lock (a backup tool, an operator's sqlite3 shell).
    let holder = rusqlite::Connection::open(&relay.state.config.database).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let reply = relay.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert_ne!(body["checks"]["writer"], "ok", "{body}");
    assert_eq!(
        relay.get("/healthz").await.status,
        StatusCode::OK,
        "still live"
    );
    holder.execute_batch("COMMIT").unwrap();
    let started = Instant::now();
    while relay.get("/readyz").await.status != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(15), "ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
