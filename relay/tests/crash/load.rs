//! The load during the crash test: simulated contributors and a requester over real HTTP, and
//! the record of everything the relay acknowledged to them.
//!
//! Contributors run the protocol code of the page and the native worker (`glowworm_protocol::protocol`):
//! lease, fetch the inputs (hash-checked), compute with the CPU reference, sign, submit. When the
//! relay is unreachable they retry the same request until it is back, or now and then give the
//! lease up (a closed tab), which leaves it to expire. Half of them work through a partner's
//! widget, so their credits carry a partner share.

use crate::relay::Base;
use glowworm_protocol::encoding::f32s_to_bytes;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::protocol::{self, ProtocolError, Transport};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{
    ErrorBody, JobList, JobStatus, Lease, LeaseRequest, MatmulShape, ReleaseReason, ResultReceipt,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The shape of every job: C (160 x 112) = A (160 x 64) * B (64 x 112), in 48 x 48 tiles (12
/// units, the last row and column narrower).
pub const SHAPE: MatmulShape = MatmulShape {
    m: 160,
    n: 112,
    k: 64,
};
/// Jobs the requester keeps queued.
const QUEUED_JOBS: usize = 3;
/// Chance, in thousandths, that a contributor whose request failed for a lost connection gives
/// its lease up instead of trying again.
const ABANDON_PERMILLE: u64 = 200;
/// Chance, in thousandths, that a contributor releases a lease instead of submitting (Stop).
const RELEASE_PERMILLE: u64 = 30;
/// Pause after a failed request or an empty queue.
const PAUSE: Duration = Duration::from_millis(20);
/// The partner named by the widget contributors' leases.
pub const PARTNER: &str = "0x1111111111111111111111111111111111111111";

/// A small seeded random generator (SplitMix64): the kill schedule is reproducible from the
/// seed the test prints. (Contributors draw from their own, so what they do depends on timing.)
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in lo..=hi.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with a chance of `permille` thousandths.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.next() % 1000 < permille
    }
}

/// The current Unix time in milliseconds (the relay's clock is the same system clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A lease the relay granted (answered 200).
#[derive(Debug, Clone)]
pub struct Granted {
    pub unit_id: i64,
    pub public_key: String,
    pub deadline_ms: i64,
    pub through_partner: bool,
}

/// A result the relay acknowledged as credited (answered 200 with a receipt).
#[derive(Debug, Clone)]
pub struct Credited {
    pub public_key: String,
    pub receipt: ResultReceipt,
}

/// What the relay told the load, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Record {
    /// Leases granted, by lease id.
    pub leases: HashMap<String, Granted>,
    /// Results acknowledged as credited, by lease id.
    pub credited: HashMap<String, Credited>,
    /// Results whose reply was lost in a crash and that a retry found accepted (409
    /// already_submitted).
    pub accepted_unacknowledged: u64,
    /// Leases given up after a lost connection, left to expire.
    pub abandoned: u64,
    /// Leases released unworked.
    pub released: u64,
    /// Results refused because their lease had expired by then.
    pub expired: u64,
    /// Requests that failed for a lost connection or a relay that was down.
    pub connection_errors: u64,
    /// Jobs the relay acknowledged (201): job id and the seed of its inputs.
    pub jobs: HashMap<i64, u64>,
    /// Job uploads whose reply was lost (the job may or may not exist).
    pub uploads_unacknowledged: u64,
    /// Broken invariants seen by the load itself.
    pub violations: Vec<String>,
}

pub type SharedRecord = Arc<Mutex<Record>>;

/// Moments the kill schedule can aim at: a contributor is about to send a request.
#[derive(Default)]
pub struct Events {
    pub lease_sent: Notify,
    pub result_sent: Notify,
}

/// Why a request to the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer: the relay is down, or the connection broke (it was killed), or it is busy
    /// (503). Worth trying again.
    #[error("no answer from the relay: {0}")]
    NoAnswer(String),
    /// The relay answered with an error.
    #[error("{status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// A success reply that is not what the API promises.
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl HttpError {
    fn code(&self) -> Option<&str> {
        match self {
            HttpError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// HTTP to whichever relay process is serving: the contributor protocol's [`Transport`], and the
/// requester's calls.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: Base,
}

impl Http {
    pub fn new(base: Base) -> Http {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        Http { client, base }
    }

    fn url(&self, path: &str) -> Result<String, HttpError> {
        match self.base.read().unwrap().as_ref() {
            Some(base) => Ok(format!("{base}{path}")),
            None => Err(HttpError::NoAnswer("the relay is down".into())),
        }
    }

    /// Sends a request and reads the whole reply: its status and body on success.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), HttpError> {
        let no_answer = |e: reqwest::Error| HttpError::NoAnswer(e.to_string());
        let response = request.send().await.map_err(no_answer)?;
        let status = response.status();
        let body = response.bytes().await.map_err(no_answer)?.to_vec();
        if status.is_success() {
            return Ok((status, body));
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(HttpError::NoAnswer(format!(
                "503: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let (code, message) = ErrorBody::code_and_message(&String::from_utf8_lossy(&body));
        Err(HttpError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }

    fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
        serde_json::from_slice(body)
            .map_err(|e| HttpError::BadReply(format!("{e}: {}", String::from_utf8_lossy(body))))
    }

    /// GET with a requester's API key.
    pub async fn get_with_key(&self, path: &str, key: &str) -> Result<Vec<u8>, HttpError> {
        let request = self.client.get(self.url(path)?).bearer_auth(key);
        Ok(self.send(request).await?.1)
    }

    /// Uploads a matmul job of raw f32 inputs; returns its status.
    pub async fn upload_job(
        &self,
        key: &str,
        a: &[f32],
        b: &[f32],
    ) -> Result<JobStatus, HttpError> {
        let spec = serde_json::json!({ "kind": "matmul", "shape": SHAPE });
        let form = reqwest::multipart::Form::new()
            .text("job", spec.to_string())
            .part("a", reqwest::multipart::Part::bytes(f32s_to_bytes(a)))
            .part("b", reqwest::multipart::Part::bytes(f32s_to_bytes(b)));
        let request = self
            .client
            .post(self.url("/v1/jobs")?)
            .bearer_auth(key)
            .multipart(form);
        Self::parse(&self.send(request).await?.1)
    }
}

impl Transport for Http {
    type Error = HttpError;

    /// A key holding as many leases as it may (a crash cut off the replies of some) has no
    /// work for now, as the page and the worker take it (`protocol::lease_with`).
    fn refusal_code(error: &HttpError) -> Option<&str> {
        match error {
            HttpError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        let request = self.client.get(self.url(path)?);
        Self::parse(&self.send(request).await?.1)
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, HttpError> {
        let request = self.client.get(self.url(path)?);
        Ok(self.send(request).await?.1)
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, HttpError> {
        let request = self.client.post(self.url(path)?).json(body);
        Self::parse(&self.send(request).await?.1)
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, HttpError> {
        let request = self.client.post(self.url(path)?).json(body);
        let (status, body) = self.send(request).await?;
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::parse(&body).map(Some)
    }
}

/// Whether an error is a lost connection (or a relay that is down), worth trying again.
fn no_answer(error: &ProtocolError<HttpError>) -> bool {
    matches!(error, ProtocolError::Transport(HttpError::NoAnswer(_)))
}

/// One simulated contributor.
pub struct Contributor {
    pub number: usize,
    pub key: ContributorKey,
    /// Works through a partner's widget: its leases name [`PARTNER`] and an origin.
    pub through_partner: bool,
    pub http: Http,
    pub rng: Rng,
    pub record: SharedRecord,
    pub events: Arc<Events>,
}

impl Contributor {
    fn violation(&self, what: String) {
        let what = format!("contributor {}: {what}", self.number);
        eprintln!("VIOLATION {what}");
        self.record.lock().unwrap().violations.push(what);
    }

    fn lost_connection(&self) {
        self.record.lock().unwrap().connection_errors += 1;
    }

    /// Leases, computes and submits until `stop` is set.
    pub async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let Some(lease) = self.lease().await else {
                tokio::time::sleep(PAUSE).await;
                continue;
            };
            let Some(output) = self.compute(&lease).await else {
                continue;
            };
            if self.rng.chance(RELEASE_PERMILLE) {
                self.release(&lease).await;
            } else {
                self.submit(&lease, &output).await;
            }
        }
    }

    /// Asks for a unit once: `None` when there is none, or no answer.
    pub async fn lease(&self) -> Option<Lease> {
        let request = LeaseRequest::signed(
            &self.key,
            now_ms(),
            None,
            self.through_partner.then(|| PARTNER.to_string()),
            self.through_partner
                .then(|| "https://blog.example".to_string()),
        );
        self.events.lease_sent.notify_waiters();
        match protocol::lease_with(&self.http, &request).await {
            Ok(Some(lease)) => {
                let granted = Granted {
                    unit_id: lease.unit_id,
                    public_key: self.key.public_hex(),
                    deadline_ms: lease.deadline_unix_ms,
                    through_partner: self.through_partner,
                };
                let mut record = self.record.lock().unwrap();
                record.leases.insert(lease.lease_id.clone(), granted);
                Some(lease)
            }
            Ok(None) => None,
            Err(e) if no_answer(&e) => {
                self.lost_connection();
                None
            }
            Err(e) => {
                self.violation(format!("lease request refused: {e}"));
                None
            }
        }
    }

    /// Gives a lease up after a lost connection, now and then: true when it does.
    fn gives_up(&mut self) -> bool {
        self.lost_connection();
        if self.rng.chance(ABANDON_PERMILLE) {
            self.record.lock().unwrap().abandoned += 1;
            return true;
        }
        false
    }

    /// Fetches the lease's inputs (trying again while the relay is down) and computes the
    /// output; `None` if the contributor gave the lease up.
    async fn compute(&mut self, lease: &Lease) -> Option<Vec<u8>> {
        let Some(shape) = lease.work.shape() else {
            self.violation(format!(
                "lease {} of a matmul job has no shape",
                lease.lease_id
            ));
            return None;
        };
        let mut inputs = Vec::new();
        for name in ["a", "b"] {
            let blob = match protocol::input::<HttpError>(lease, name) {
                Ok(blob) => blob.clone(),
                Err(e) => {
                    self.violation(format!("lease {}: {e}", lease.lease_id));
                    return None;
                }
            };
            loop {
                match protocol::fetch_f32_blob(&self.http, &blob).await {
                    Ok((values, _)) => {
                        inputs.push(values);
                        break;
                    }
                    Err(e) if no_answer(&e) => {
                        if self.gives_up() {
                            return None;
                        }
                        tokio::time::sleep(PAUSE).await;
                    }
                    Err(e) => {
                        self.violation(format!(
                            "input {} of lease {}: {e}",
                            blob.hash, lease.lease_id
                        ));
                        return None;
                    }
                }
            }
        }
        Some(f32s_to_bytes(&matmul::reference(
            &inputs[0], &inputs[1], shape,
        )))
    }

    /// Submits the result, sending it again after a lost connection until the relay answers.
    async fn submit(&mut self, lease: &Lease, output: &[u8]) {
        let submission = protocol::submission_of_bytes(&self.key, lease, output);
        // Whether a copy was sent whose answer never came: it may have been accepted.
        let mut sent_unanswered = false;
        loop {
            self.events.result_sent.notify_waiters();
            let error = match protocol::submit(&self.http, &submission).await {
                Ok(receipt) => {
                    if receipt.status != "verified" || receipt.credited <= 0 {
                        self.violation(format!(
                            "lease {}: an honest result was not credited: {receipt:?}",
                            lease.lease_id
                        ));
                    }
                    let credited = Credited {
                        public_key: self.key.public_hex(),
                        receipt,
                    };
                    let mut record = self.record.lock().unwrap();
                    record.credited.insert(lease.lease_id.clone(), credited);
                    return;
                }
                Err(ProtocolError::Transport(error)) => error,
                Err(other) => {
                    self.violation(format!("result for lease {}: {other}", lease.lease_id));
                    return;
                }
            };
            match error.code() {
                None if matches!(error, HttpError::NoAnswer(_)) => {
                    sent_unanswered = true;
                    if self.gives_up() {
                        return;
                    }
                    tokio::time::sleep(PAUSE).await;
                }
                Some("already_submitted") if sent_unanswered => {
                    self.record.lock().unwrap().accepted_unacknowledged += 1;
                    return;
                }
                Some("lease_expired") => {
                    self.lease_closed(lease, &error);
                    return;
                }
                _ => {
                    self.violation(format!(
                        "result for lease {} (unit {}) refused: {error}",
                        lease.lease_id, lease.unit_id
                    ));
                    return;
                }
            }
        }
    }

    /// A lease the relay says is closed: fine once its deadline has passed, a broken promise
    /// before.
    fn lease_closed(&self, lease: &Lease, error: &HttpError) {
        if now_ms() <= lease.deadline_unix_ms {
            self.violation(format!(
                "lease {} was closed before its deadline: {error}",
                lease.lease_id
            ));
        } else {
            self.record.lock().unwrap().expired += 1;
        }
    }

    /// Gives the lease back unworked, trying again after a lost connection.
    async fn release(&mut self, lease: &Lease) {
        loop {
            match protocol::release(&self.http, &self.key, lease, ReleaseReason::Stopped).await {
                Ok(()) => {
                    self.record.lock().unwrap().released += 1;
                    return;
                }
                Err(e) if no_answer(&e) => {
                    if self.gives_up() {
                        return;
                    }
                    tokio::time::sleep(PAUSE).await;
                }
                Err(ProtocolError::Transport(error)) if error.code() == Some("lease_expired") => {
                    self.lease_closed(lease, &error);
                    return;
                }
                Err(e) => {
                    self.violation(format!("release of lease {}: {e}", lease.lease_id));
                    return;
                }
            }
        }
    }
}

/// A requester that keeps [`QUEUED_JOBS`] jobs queued until `stop` is set. Each job's inputs
/// are [`glowworm_relay::work::demo::demo_matrices`] of a fresh seed.
pub async fn request_jobs(
    http: Http,
    key: String,
    first_seed: u64,
    record: SharedRecord,
    stop: Arc<AtomicBool>,
) {
    let mut seed = first_seed;
    let violation = |what: String| {
        eprintln!("VIOLATION requester: {what}");
        record
            .lock()
            .unwrap()
            .violations
            .push(format!("requester: {what}"));
    };
    while !stop.load(Ordering::Relaxed) {
        let queued = match http.get_with_key("/v1/jobs", &key).await {
            Ok(body) => match serde_json::from_slice::<JobList>(&body) {
                Ok(list) => list.jobs.iter().filter(|j| j.state == "queued").count(),
                Err(e) => {
                    violation(format!("GET /v1/jobs: {e}"));
                    return;
                }
            },
            Err(HttpError::NoAnswer(_)) => {
                record.lock().unwrap().connection_errors += 1;
                tokio::time::sleep(PAUSE).await;
                continue;
            }
            Err(e) => {
                violation(format!("GET /v1/jobs: {e}"));
                return;
            }
        };
        if queued >= QUEUED_JOBS {
            tokio::time::sleep(PAUSE).await;
            continue;
        }
        seed += 1;
        let (a, b) = glowworm_relay::work::demo::demo_matrices(seed, SHAPE);
        match http.upload_job(&key, &a, &b).await {
            Ok(status) => {
                record.lock().unwrap().jobs.insert(status.id, seed);
            }
            Err(HttpError::NoAnswer(_)) => {
                let mut record = record.lock().unwrap();
                record.connection_errors += 1;
                record.uploads_unacknowledged += 1;
            }
            Err(e) => {
                violation(format!("job upload refused: {e}"));
                return;
            }
        }
    }
}
