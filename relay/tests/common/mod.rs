//! Shared test helpers: a relay on a temporary SQLite file with a manual clock, requests through
//! `app(state)` without a socket, simulated contributors, and a small checker of replies
//! against the OpenAPI document's schemas.
#![allow(dead_code)] // each test binary uses a different part of this module

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{KernelSource, Lease, ResultReceipt, ResultSubmission};
use glowworm_relay::{AppState, Config, ManualClock, app};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tower::ServiceExt;

/// Settings for tests: no demo generator running on its own, a small demo job of four units
/// (two of them narrower, at the right edge), a 60 s lease and 3 attempts.
pub fn test_config(dir: &TempDir) -> Config {
    Config {
        database: dir.path().join("db/relay.sqlite"),
        demo_jobs: false,
        lease_seconds: 60,
        max_attempts: 3,
        unit_size: 64,
        demo_m: 128,
        demo_n: 96,
        demo_k: 64,
        ..Config::default()
    }
}

/// The credits a test relay grants the demo budget and each requester it creates: more than
/// any test spends.
pub const TEST_BUDGET: i64 = 1_000_000_000_000_000;

pub struct TestRelay {
    pub app: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub dir: TempDir,
}

/// A reply: status, headers and body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply {} is not the expected JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts this is an error reply with `status` and `code`, in the ErrorBody shape.
    pub fn assert_error(&self, status: u16, code: &str) {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "expected a JSON error {status} {code}, got {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        });
        assert_eq!(
            (self.status.as_u16(), body["error"]["code"].as_str()),
            (status, Some(code)),
            "body: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error names what was wrong: {body}"
        );
        assert_eq!(
            self.headers["content-type"], "application/json",
            "errors are JSON"
        );
        check_schema(&body, "ErrorBody");
    }
}

impl TestRelay {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A relay whose test settings `adjust` may change.
    pub fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::with_clock(ManualClock::new(), adjust)
    }

    /// A relay whose clock starts at `now_ms` (such as the time fixtures were signed for).
    pub fn at(now_ms: i64, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::with_clock(ManualClock::starting_at(now_ms), adjust)
    }

    fn with_clock(clock: ManualClock, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new().unwrap();
        let mut config = test_config(&dir);
        adjust(&mut config);
        let state = AppState::open_with_clock(config, Arc::new(clock.clone())).unwrap();
        // The demo jobs tests queue are paid from the demo budget, as an operator would grant it.
        let now = glowworm_relay::Clock::now_ms(&clock);
        let db = state.db.clone();
        // On a thread of its own: a test's async runtime must not block on the writer.
        std::thread::spawn(move || {
            db.batch_blocking(move |conn| {
                glowworm_relay::accounts::ledger::grant(
                    conn,
                    glowworm_relay::accounts::ledger::DEMO_BUDGET,
                    TEST_BUDGET,
                    "tests",
                    now,
                )
            })
        })
        .join()
        .unwrap()
        .unwrap();
        TestRelay {
            app: app(state.clone()),
            state,
            clock,
            dir,
        }
    }

    /// Builds the router again from the state, after a test changed it (such as its chain).
    pub fn rebuild_app(&mut self) {
        self.app = app(self.state.clone());
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// POSTs raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<Body>) -> Reply {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> Reply {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    /// Queues a matmul job of seeded random matrices (`replicas`: None for Freivalds' check,
    /// Some(k) for replication); returns its id and its inputs.
    pub async fn queue_job(
        &self,
        shape: glowworm_protocol::wire::MatmulShape,
        replicas: Option<u32>,
        seed: u64,
    ) -> (i64, Vec<f32>, Vec<f32>) {
        let a = matmul::sample_matrix(shape.m * shape.k, seed);
        let b = matmul::sample_matrix(shape.k * shape.n, seed + 1);
        let (a2, b2) = (a.clone(), b.clone());
        let config = self.state.config.clone();
        let store = self.state.db.blob_store().clone();
        let now = self.clock_now();
        let job_id = self
            .state
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let split = glowworm_relay::work::jobs::Split {
                    unit_size: config.unit_size,
                    max_attempts: config.max_attempts,
                    replicas,
                };
                let owner = glowworm_relay::work::jobs::Owner::Demo;
                let id = glowworm_relay::work::jobs::create_matmul(
                    &tx, &config, &store, &a2, &b2, shape, split, owner, now,
                )?;
                tx.commit()?;
                Ok(id)
            })
            .await
            .unwrap();
        (job_id, a, b)
    }

    /// Queues a kernel job of `spec` (checked as an upload would be) with `inputs`, one per
    /// declared input; returns its id.
    pub async fn queue_kernel_job(
        &self,
        spec: glowworm_protocol::wire::KernelSpec,
        inputs: Vec<Vec<u8>>,
    ) -> i64 {
        let validated = glowworm_protocol::kernels::custom::validate(&spec).unwrap();
        let store = self.state.db.blob_store().clone();
        let job = glowworm_relay::work::jobs::KernelJob::store(
            &store,
            &spec,
            &inputs,
            validated.workgroup_size,
            self.state.config.max_attempts,
        )
        .unwrap();
        let now = self.clock_now();
        let config = self.state.config.clone();
        self.state
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let id = job.insert(&tx, &config, glowworm_relay::work::jobs::Owner::Demo, now)?;
                tx.commit()?;
                Ok(id)
            })
            .await
            .unwrap()
    }

    /// Creates a requester named `name` with a quota of `quota` units and a budget of
    /// [`TEST_BUDGET`] credits; returns its API key.
    pub async fn create_api_key(&self, name: &'static str, quota: u64) -> String {
        self.create_api_key_with_budget(name, quota, TEST_BUDGET)
            .await
    }

    /// Creates a requester named `name` with a quota of `quota` units and `budget` credits
    /// granted (none when 0); returns its API key.
    pub async fn create_api_key_with_budget(
        &self,
        name: &'static str,
        quota: u64,
        budget: i64,
    ) -> String {
        let now = self.clock_now();
        self.state
            .db
            .call(move |conn| {
                let (key, info) =
                    glowworm_relay::accounts::requesters::create(conn, name, quota, now)
                        .map_err(|e| glowworm_relay::ApiError::Internal(e.to_string()))?;
                if budget > 0 {
                    let account = glowworm_relay::accounts::ledger::requester_account(info.id);
                    glowworm_relay::accounts::ledger::grant(conn, &account, budget, "tests", now)?;
                }
                Ok(key)
            })
            .await
            .unwrap()
    }

    /// Links `who`'s key to `address` (the evidence is not checked here; the wallet tests check
    /// links).
    pub async fn link(&self, who: &Contributor, address: &str) {
        let (key, address) = (who.public_key(), address.to_string());
        self.state
            .db
            .call(move |conn| {
                Ok(conn.execute(
                    "INSERT INTO links (public_key, address, chain_id, linked_at_ms, siwe_message,
                                        wallet_signature, session_signature)
                     VALUES (?1, ?2, 1, 0, 'm', 's', 's')",
                    [key.as_str(), address.as_str()],
                )?)
            })
            .await
            .unwrap();
    }

    /// Checks the books after a step: every entry sums to zero, so does everything, no
    /// account but a source is below zero, and the balances agree with the ledger.
    pub async fn assert_books_balance(&self) {
        let audit = self
            .state
            .db
            .read(glowworm_relay::accounts::ledger::audit)
            .await
            .unwrap();
        assert!(audit.holds(), "the books do not balance: {audit:?}");
    }

    /// A job's status, once its output is assembled if every unit is verified
    /// ([`TestRelay::assembled`]; [`TestRelay::job_now`] for the status at once).
    pub async fn job(&self, job_id: i64) -> glowworm_protocol::wire::JobStatus {
        self.assembled(job_id).await;
        self.job_now(job_id).await
    }

    /// Waits until job `job_id` is no longer waiting for its output: the relay's assembler
    /// thread writes it just after the transaction that verified the last unit.
    pub async fn assembled(&self, job_id: i64) {
        let started = std::time::Instant::now();
        let sql = format!("SELECT assembling FROM jobs WHERE id = {job_id}");
        while self.count(&sql).await != 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job {job_id}'s output is not assembled after a minute"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until no job is waiting for its output ([`TestRelay::assembled`]).
    pub async fn all_assembled(&self) {
        let started = std::time::Instant::now();
        while self
            .count("SELECT COUNT(*) FROM jobs WHERE assembling = 1")
            .await
            != 0
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job outputs are not assembled after a minute"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A job's status as it is now.
    pub async fn job_now(&self, job_id: i64) -> glowworm_protocol::wire::JobStatus {
        let reply = self.get(&format!("/v1/jobs/{job_id}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()
    }

    /// Queues a demo job now (the generator's tick); returns its id and seed.
    pub async fn queue_demo_job(&self) -> glowworm_relay::work::demo::DemoJob {
        glowworm_relay::work::demo::tick(&self.state.db, &self.state.config, self.state.now_ms())
            .await
            .unwrap()
            .expect("no open units, so tick queues a job")
    }

    /// `n` contributors with a verified record (proven keys: trusted, so their failures count
    /// against the units they hold), each from its own network (198.18.i.1).
    /// Needs `trust_after` = 1: each earns one demo unit; every unit of the demo jobs this queues
    /// is computed, so none is left pending to get in the way of what a test queues next.
    pub async fn proven_contributors(&self, n: usize) -> Vec<Contributor> {
        assert_eq!(
            self.state.config.trust_after, 1,
            "proven_contributors needs trust_after = 1"
        );
        let contributors: Vec<Contributor> = (0..n)
            .map(|i| Contributor::at(&format!("198.18.{i}.1")))
            .collect();
        let mut earned = 0;
        loop {
            let pending = self
                .count("SELECT COUNT(*) FROM units WHERE state IN ('pending', 'leased')")
                .await;
            if earned >= n && pending == 0 {
                return contributors;
            }
            if pending == 0 {
                self.queue_demo_job().await;
            }
            contributors[earned % n].earn(self).await;
            earned += 1;
        }
    }

    /// Lets the longest hold pass: a unit that keys without a record failed is held for keys
    /// with one for at most `units::MAX_HOLD_MS`, after which a new key may take it again.
    pub fn pass_holds(&self) {
        self.advance(Duration::from_millis(
            glowworm_relay::work::units::MAX_HOLD_MS as u64 + 1,
        ));
    }

    /// Lets a new job's first pick (units only for keys with a record) run out.
    pub fn pass_first_pick(&self) {
        self.advance(Duration::from_millis(
            glowworm_relay::work::units::FIRST_PICK_MS as u64 + 1,
        ));
    }

    pub fn clock_now(&self) -> i64 {
        glowworm_relay::Clock::now_ms(&self.clock)
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Runs one SQL query returning a single integer, on the relay's own database.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        self.state
            .db
            .call(move |conn| Ok(conn.query_row(&sql, [], |row| row.get(0))?))
            .await
            .unwrap()
    }

    /// Rows of the tables a refused request must not change, with the total credits.
    pub async fn footprint(&self) -> [i64; 5] {
        [
            self.count("SELECT COUNT(*) FROM results").await,
            self.count("SELECT COUNT(*) FROM ledger").await,
            self.count(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger
                 WHERE kind IN ('unit_verified', 'partner_share')",
            )
            .await,
            self.count("SELECT COUNT(*) FROM blobs").await,
            self.count("SELECT COUNT(*) FROM leases WHERE state = 'active'")
                .await,
        ]
    }
}

/// A simulated contributor: computes on the CPU with the kernel's reference and signs like the
/// browser module does.
pub struct Contributor {
    pub key: ContributorKey,
    /// The address its lease requests come from (none: requests without a peer address).
    pub ip: Option<std::net::IpAddr>,
}

impl Contributor {
    pub fn new() -> Self {
        Contributor {
            key: ContributorKey::generate().unwrap(),
            ip: None,
        }
    }

    /// A new contributor whose requests come from `ip`.
    pub fn at(ip: &str) -> Self {
        Contributor {
            ip: Some(ip.parse().unwrap()),
            ..Contributor::new()
        }
    }

    /// The contributor whose ed25519 seed is `seed`.
    pub fn from_seed(seed: &[u8]) -> Self {
        Contributor {
            key: ContributorKey::from_secret_bytes(seed).unwrap(),
            ip: None,
        }
    }

    /// A lease request signed now by the relay's clock (and later than this key's last one).
    pub fn lease_request(&self, relay: &TestRelay) -> glowworm_protocol::wire::LeaseRequest {
        glowworm_protocol::wire::LeaseRequest::signed(
            &self.key,
            relay.clock_now(),
            None,
            None,
            None,
        )
    }

    /// A lease request naming `adapter` and the partner widget's `partner` and `origin`, signed
    /// with them now by the relay's clock. The fields need not be valid: the relay checks the
    /// signature first, so a test of a bad field signs it as a contributor would send it.
    pub fn lease_request_with(
        &self,
        relay: &TestRelay,
        adapter: Option<glowworm_protocol::wire::AdapterClass>,
        partner: Option<&str>,
        origin: Option<&str>,
    ) -> glowworm_protocol::wire::LeaseRequest {
        glowworm_protocol::wire::LeaseRequest::signed(
            &self.key,
            relay.clock_now(),
            adapter,
            partner.map(str::to_string),
            origin.map(str::to_string),
        )
    }

    /// Asks for work and returns the raw reply (any status).
    pub async fn lease_reply(&self, relay: &TestRelay) -> Reply {
        let body = self.lease_request(relay);
        self.send_lease(relay, &body).await
    }

    /// Asks for work naming `adapter`, `partner` and `origin` (signed with them); returns the
    /// raw reply.
    pub async fn lease_reply_with(
        &self,
        relay: &TestRelay,
        adapter: Option<glowworm_protocol::wire::AdapterClass>,
        partner: Option<&str>,
        origin: Option<&str>,
    ) -> Reply {
        let body = self.lease_request_with(relay, adapter, partner, origin);
        self.send_lease(relay, &body).await
    }

    /// Posts `body` (a lease request, maybe a forged one) as this contributor's connection.
    pub async fn send_lease(&self, relay: &TestRelay, body: &impl Serialize) -> Reply {
        let mut request = Request::post("/v1/leases")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        if let Some(ip) = self.ip {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                    ip, 40000,
                )));
        }
        relay.send(request).await
    }

    /// Gives `lease` back for `reason` (None: say nothing, as older contributors do), signed;
    /// returns the raw reply.
    pub async fn release(
        &self,
        relay: &TestRelay,
        lease: &Lease,
        reason: Option<glowworm_protocol::wire::ReleaseReason>,
    ) -> Reply {
        self.release_id(relay, &lease.lease_id, reason).await
    }

    /// Gives back the lease `lease_id` (which may be unknown or another's) for `reason`,
    /// signed; returns the raw reply.
    pub async fn release_id(
        &self,
        relay: &TestRelay,
        lease_id: &str,
        reason: Option<glowworm_protocol::wire::ReleaseReason>,
    ) -> Reply {
        relay
            .post(
                &format!("/v1/leases/{lease_id}/release"),
                &self.release_request(lease_id, reason),
            )
            .await
    }

    /// This contributor's signed release of `lease_id` for `reason` (None: the body names no
    /// reason, and the signature is over "stopped", as older contributors send it).
    pub fn release_request(
        &self,
        lease_id: &str,
        reason: Option<glowworm_protocol::wire::ReleaseReason>,
    ) -> glowworm_protocol::wire::ReleaseRequest {
        let mut body = glowworm_protocol::wire::ReleaseRequest::signed(
            &self.key,
            lease_id,
            reason.unwrap_or(glowworm_protocol::wire::ReleaseReason::Stopped),
        );
        body.reason = reason;
        body
    }

    /// Submits `output` for `lease`, correctly signed; returns the raw reply.
    pub async fn submit(&self, relay: &TestRelay, lease: &Lease, output: &[u8]) -> Reply {
        relay
            .post("/v1/results", &self.submission(lease, output))
            .await
    }

    /// The contributor's info as the relay shows it.
    /// `GET /v1/contributors/{key}`, any answer.
    pub async fn info_reply(&self, relay: &TestRelay) -> Reply {
        relay
            .get(&format!("/v1/contributors/{}", self.public_key()))
            .await
    }

    pub async fn info(&self, relay: &TestRelay) -> glowworm_protocol::wire::ContributorInfo {
        let reply = self.info_reply(relay).await;
        assert_eq!(reply.status, StatusCode::OK);
        check_schema(&reply.json(), "ContributorInfo");
        reply.json()
    }

    /// Leases a unit, computes it and submits it; asserts it is verified and returns the receipt.
    pub async fn earn(&self, relay: &TestRelay) -> ResultReceipt {
        let lease = self.lease(relay).await.expect("a unit is pending");
        self.complete(relay, &lease).await
    }

    /// Computes `lease` correctly and submits it; asserts it is accepted and returns the receipt.
    pub async fn complete(&self, relay: &TestRelay, lease: &Lease) -> ResultReceipt {
        let output = self.compute(relay, lease).await;
        accepted(&self.submit(relay, lease, &output).await)
    }

    pub fn public_key(&self) -> String {
        self.key.public_hex()
    }

    /// Asks for work: `Some(lease)` on 200, `None` on 204.
    pub async fn lease(&self, relay: &TestRelay) -> Option<Lease> {
        let reply = self.lease_reply(relay).await;
        match reply.status {
            StatusCode::OK => {
                check_schema(&reply.json::<Value>(), "Lease");
                Some(reply.json())
            }
            StatusCode::NO_CONTENT => {
                assert_eq!(reply.headers["retry-after"], "1");
                None
            }
            other => panic!(
                "lease request answered {other}: {}",
                String::from_utf8_lossy(&reply.body)
            ),
        }
    }

    /// Asks for work as a stranger may be answered: a lease, or `None` for no work (204), a
    /// key at its lease cap (429 `lease_cap`) or a quarantined key (403 `quarantined`); any
    /// other answer fails the test.
    pub async fn try_lease(&self, relay: &TestRelay) -> Option<Lease> {
        let reply = self.lease_reply(relay).await;
        let code = (reply.status != StatusCode::OK && reply.status != StatusCode::NO_CONTENT)
            .then(|| reply.json::<Value>()["error"]["code"].clone());
        match (reply.status.as_u16(), code.as_ref().and_then(Value::as_str)) {
            (200, _) => Some(reply.json()),
            (204, _) | (429, Some("lease_cap")) | (403, Some("quarantined")) => None,
            (other, _) => panic!(
                "lease request answered {other}: {}",
                String::from_utf8_lossy(&reply.body)
            ),
        }
    }

    /// Fetches the lease's kernel and inputs over HTTP and computes the output bytes.
    pub async fn compute(&self, relay: &TestRelay, lease: &Lease) -> Vec<u8> {
        let kernel = relay
            .get(&format!("/v1/kernels/{}", lease.kernel.hash))
            .await;
        assert_eq!(kernel.status, StatusCode::OK);
        let kernel: KernelSource = kernel.json();
        assert_eq!(kernel.hash, lease.kernel.hash);
        assert_eq!(ContentHash::of(kernel.wgsl.as_bytes()), kernel.hash);

        let mut inputs = Vec::new();
        for blob in &lease.inputs {
            let reply = relay.get(&format!("/v1/blobs/{}", blob.hash)).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body.len() as u64, blob.bytes);
            assert_eq!(ContentHash::of(&reply.body), blob.hash);
            inputs.push(bytes_to_f32s(&reply.body).unwrap());
        }
        assert_eq!(
            lease
                .inputs
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let c = matmul::reference(&inputs[0], &inputs[1], lease.work.shape().unwrap());
        f32s_to_bytes(&c)
    }

    /// A correctly signed submission of `output` for `lease`.
    pub fn submission(&self, lease: &Lease, output: &[u8]) -> ResultSubmission {
        ResultSubmission {
            lease_id: lease.lease_id.clone(),
            unit_id: lease.unit_id,
            public_key: self.public_key(),
            output: to_base64(output),
            signature: self.key.sign_result(
                lease.unit_id,
                &lease.lease_id,
                &lease.kernel.hash,
                output,
            ),
        }
    }

    pub async fn balance(&self, relay: &TestRelay) -> i64 {
        let reply = relay
            .get(&format!("/v1/contributors/{}", self.public_key()))
            .await;
        match reply.status {
            StatusCode::OK => reply.json::<Value>()["credits"].as_i64().unwrap(),
            StatusCode::NOT_FOUND => 0,
            other => panic!("contributor info answered {other}"),
        }
    }
}

/// The receipt of an accepted result: asserts the reply is 200 with a `ResultReceipt`.
pub fn accepted(reply: &Reply) -> ResultReceipt {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    check_schema(&reply.json(), "ResultReceipt");
    reply.json()
}

/// The relay's OpenAPI document.
pub fn openapi() -> Value {
    serde_json::from_str(glowworm_relay::OPENAPI_JSON).expect("openapi.json is JSON")
}

/// Asserts the OpenAPI document lists `reply`'s status among the replies of `method path` (as
/// the document writes them: "post", "/v1/leases/{lease_id}/release") and, where that reply's
/// description names its codes, the reply's error code among them.
pub fn assert_documented(reply: &Reply, method: &str, path: &str) {
    let doc = openapi();
    let status = reply.status.as_u16().to_string();
    let mut response = &doc["paths"][path][method]["responses"][&status];
    assert!(
        response.is_object(),
        "openapi.json does not document {status} for {method} {path}"
    );
    if let Some(reference) = response["$ref"].as_str() {
        response = doc
            .pointer(reference.trim_start_matches('#'))
            .expect("the reference resolves");
    }
    let description = response["description"].as_str().unwrap_or_default();
    let Some((_, codes)) = description.split_once("Codes:") else {
        return;
    };
    let code = reply.json::<Value>()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        codes.contains(&format!("`{code}`")),
        "openapi.json does not name {status} {code} for {method} {path}: {description}"
    );
}

/// Asserts `value` fits the OpenAPI component schema `name` (the subset of JSON Schema the
/// document uses: type, properties, required, additionalProperties, items, enum, oneOf, $ref,
/// pattern of hex strings, signatures and addresses, minItems/maxItems, minimum).
pub fn check_schema(value: &Value, name: &str) {
    let doc = openapi();
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name} in openapi.json");
    if let Err(e) = fits(&doc, value, schema, name) {
        panic!("{value} does not fit schema {name}: {e}");
    }
}

fn fits(doc: &Value, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return fits(doc, value, &doc["components"]["schemas"][name], name);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| fits(doc, value, option, at).is_ok())
            .count();
        return if matching == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {matching} of oneOf match"))
        };
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let object = value.as_object().ok_or(format!("{at}: not an object"))?;
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !object.contains_key(required) {
                    return Err(format!("{at}: missing {required}"));
                }
            }
            for (key, item) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => fits(doc, item, property, &format!("{at}.{key}"))?,
                    None if schema["additionalProperties"] == Value::Bool(false) => {
                        return Err(format!("{at}: unexpected property {key}"));
                    }
                    None => {}
                }
            }
        }
        Some("array") => {
            let items = value.as_array().ok_or(format!("{at}: not an array"))?;
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                return Err(format!("{at}: fewer than {min} items"));
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && (items.len() as u64) > max
            {
                return Err(format!("{at}: more than {max} items"));
            }
            for (i, item) in items.iter().enumerate() {
                fits(doc, item, &schema["items"], &format!("{at}[{i}]"))?;
            }
        }
        Some("integer") => {
            if !(value.is_i64() || value.is_u64()) {
                return Err(format!("{at}: not an integer"));
            }
            if let Some(min) = schema["minimum"].as_f64()
                && value.as_f64().unwrap() < min
            {
                return Err(format!("{at}: below {min}"));
            }
        }
        Some("number") => {
            let number = value.as_f64().ok_or(format!("{at}: not a number"))?;
            if let Some(min) = schema["minimum"].as_f64()
                && number < min
            {
                return Err(format!("{at}: below {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && number > max
            {
                return Err(format!("{at}: above {max}"));
            }
        }
        Some("string") => {
            let text = value.as_str().ok_or(format!("{at}: not a string"))?;
            let is_hex64 = text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit());
            let fits_pattern = match schema["pattern"].as_str() {
                None => true,
                Some("^0x[0-9a-fA-F]{40}$") => {
                    text.len() == 42
                        && text.starts_with("0x")
                        && text[2..].chars().all(|c| c.is_ascii_hexdigit())
                }
                Some("^[0-9a-f]{64}$") => is_hex64 && !text.chars().any(|c| c.is_ascii_uppercase()),
                Some("^[0-9a-fA-F]{64}$") => is_hex64,
                Some("^[0-9]+$") => !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()),
                Some("^[0-9a-fA-F]{128}$") => {
                    text.len() == 128 && text.chars().all(|c| c.is_ascii_hexdigit())
                }
                Some(other) => {
                    return Err(format!("{at}: the checker does not know pattern {other}"));
                }
            };
            if !fits_pattern {
                return Err(format!(
                    "{at}: {text:?} does not match {}",
                    schema["pattern"]
                ));
            }
        }
        Some("boolean") => {
            value.as_bool().ok_or(format!("{at}: not a boolean"))?;
        }
        Some("null") => {
            value.as_null().ok_or(format!("{at}: not null"))?;
        }
        Some(other) => return Err(format!("{at}: the checker does not know type {other}")),
        None => {}
    }
    Ok(())
}

/// The contributor protocol's HTTP (`glowworm_protocol::protocol::Transport`) over the relay's router,
/// without a socket: simulated contributors run the same protocol code as the page and the
/// native worker. Requests carry `ip` as their peer address, when set.
pub struct InProcess<'a> {
    pub relay: &'a TestRelay,
    pub ip: Option<std::net::IpAddr>,
}

/// A relay reply other than success, as the protocol code sees it.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct RelayError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl InProcess<'_> {
    async fn call(&self, mut request: Request<Body>) -> Result<Reply, RelayError> {
        if let Some(ip) = self.ip {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                    ip, 40000,
                )));
        }
        let reply = self.relay.send(request).await;
        if reply.status.is_success() {
            return Ok(reply);
        }
        let (code, message) = glowworm_protocol::wire::ErrorBody::code_and_message(
            &String::from_utf8_lossy(&reply.body),
        );
        Err(RelayError {
            status: reply.status.as_u16(),
            code,
            message,
        })
    }

    fn post_request(path: &str, body: &impl Serialize) -> Request<Body> {
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap()
    }
}

impl glowworm_protocol::protocol::Transport for InProcess<'_> {
    type Error = RelayError;

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let reply = self
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await?;
        Ok(reply.json())
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RelayError> {
        let reply = self
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await?;
        Ok(reply.body)
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RelayError> {
        Ok(self.call(Self::post_request(path, body)).await?.json())
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, RelayError> {
        let reply = self.call(Self::post_request(path, body)).await?;
        Ok((reply.status != StatusCode::NO_CONTENT).then(|| reply.json()))
    }
}

/// Files under `dir`, in all its subdirectories (0 when it does not exist).
pub fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
