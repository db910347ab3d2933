//! Requesters: API keys, submitting matmul jobs (.npy and raw f32), following, cancelling and
//! downloading them, and every kind of bad upload refused with a 4xx that names the reason and
//! stores nothing.

use crate::common;

use crate::common::{Contributor, Reply, TestRelay, check_schema};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::npy;
use glowworm_protocol::wire::{JobList, JobStatus, MatmulShape};
use glowworm_relay::accounts::requesters;
use serde_json::{Value, json};

/// One part of a multipart/form-data upload.
pub(crate) struct Part {
    name: &'static str,
    bytes: Vec<u8>,
}

pub(crate) fn part(name: &'static str, bytes: impl Into<Vec<u8>>) -> Part {
    Part {
        name,
        bytes: bytes.into(),
    }
}

pub(crate) fn job_part(spec: Value) -> Part {
    part("job", spec.to_string())
}

const BOUNDARY: &str = "glowworm-test-boundary";

pub(crate) fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                part.name, part.name
            )
            .as_bytes(),
        );
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A relay and a requester key (quota `quota` units).
async fn relay_with_key(quota: u64) -> (TestRelay, String) {
    let relay = TestRelay::new();
    let key = relay.create_api_key("lab", quota).await;
    (relay, key)
}

pub(crate) async fn submit(relay: &TestRelay, key: Option<&str>, body: Vec<u8>) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/jobs")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    relay.send(request.body(Body::from(body)).unwrap()).await
}

pub(crate) async fn send(
    relay: &TestRelay,
    method: Method,
    path: &str,
    key: Option<&str>,
    accept: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::ACCEPT, accept);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    relay.send(request.body(Body::empty()).unwrap()).await
}

pub(crate) fn npy_matrix(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    npy::write_f32(&[rows, cols], &f32s_to_bytes(values))
}

/// Every pending unit computed by honest contributors until none is left.
pub(crate) async fn compute_everything(relay: &TestRelay) -> u32 {
    let contributor = Contributor::new();
    let mut units = 0;
    while let Some(lease) = contributor.lease(relay).await {
        contributor.complete(relay, &lease).await;
        units += 1;
    }
    // The outputs of the jobs this finished are assembled just after, off the writer.
    relay.all_assembled().await;
    units
}

/// Rows in the tables a refused upload must not touch.
async fn stored(relay: &TestRelay) -> (i64, i64) {
    (
        relay.count("SELECT COUNT(*) FROM jobs").await,
        relay.count("SELECT COUNT(*) FROM units").await,
    )
}

#[tokio::test]
async fn a_matmul_job_from_npy_files_is_computed_verified_and_downloaded() {
    let (relay, key) = relay_with_key(1000).await;
    let shape = MatmulShape {
        m: 100,
        n: 90,
        k: 70,
    };
    let a = matmul::sample_matrix(shape.m * shape.k, 1);
    let b = matmul::sample_matrix(shape.k * shape.n, 2);
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(100, 70, &a)),
        part("b", npy_matrix(70, 90, &b)),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    check_schema(&reply.json::<Value>(), "JobStatus");
    let job: JobStatus = reply.json();
    assert_eq!(
        (job.kind.as_str(), job.state.as_str()),
        ("matmul", "queued")
    );
    assert_eq!(job.shape, Some(shape));
    assert_eq!(job.units_total, 4, "100x90 in tiles of 64: 2 x 2");
    assert_eq!(job.output_bytes, 4 * 100 * 90);

    // Not done yet: no result.
    let early = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "*/*",
    )
    .await;
    early.assert_error(409, "job_not_done");

    assert_eq!(compute_everything(&relay).await, 4);
    let status: JobStatus = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .json();
    assert_eq!((status.state.as_str(), status.progress), ("done", 1.0));

    let expected = matmul::reference(&a, &b, shape);
    let raw = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "application/octet-stream",
    )
    .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        raw.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(bytes_to_f32s(&raw.body).unwrap(), expected);
    let file = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "application/x-npy",
    )
    .await;
    assert_eq!(file.headers[header::CONTENT_TYPE], "application/x-npy");
    let array = npy::parse_f32(&file.body).unwrap();
    assert_eq!(array.shape, vec![100, 90]);
    assert_eq!(array.data, &raw.body[..]);

    // The job's inputs and output are files in the blob store beside the database.
    let blob_dir = relay.state.db.blob_store().dir().to_path_buf();
    let files = common::files_under(&blob_dir);
    assert!(
        files == 2 + 2 + 1,
        "2 A panels, 2 B panels and C on disk; found {files}"
    );

    let list: JobList = send(&relay, Method::GET, "/v1/jobs", Some(&key), "*/*")
        .await
        .json();
    check_schema(&serde_json::to_value(&list).unwrap(), "JobList");
    assert_eq!(list.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [job.id]);
}

#[tokio::test]
async fn raw_f32_inputs_need_the_shape_in_the_spec() {
    let (relay, key) = relay_with_key(1000).await;
    let a = matmul::sample_matrix(8 * 3, 3);
    let b = matmul::sample_matrix(3 * 5, 4);
    let shape = json!({"m": 8, "n": 5, "k": 3});
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul", "shape": shape})),
        part("a", f32s_to_bytes(&a)),
        part("b", f32s_to_bytes(&b)),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    compute_everything(&relay).await;
    let job: JobStatus = reply.json();
    let raw = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "*/*",
    )
    .await;
    let shape = MatmulShape { m: 8, n: 5, k: 3 };
    assert_eq!(
        bytes_to_f32s(&raw.body).unwrap(),
        matmul::reference(&a, &b, shape)
    );

    let without_shape = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", f32s_to_bytes(&a)),
        part("b", f32s_to_bytes(&b)),
    ]);
    submit(&relay, Some(&key), without_shape)
        .await
        .assert_error(400, "bad_shape");
}

#[tokio::test]
async fn bad_uploads_are_refused_with_their_reason_and_store_nothing() {
    let (relay, key) = relay_with_key(1000).await;
    let a = npy_matrix(4, 3, &[1.0; 12]);
    let b = npy_matrix(3, 2, &[1.0; 6]);
    let matmul = || job_part(json!({"kind": "matmul"}));
    let before = stored(&relay).await;

    let f64_npy = {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";
        let mut file = npy::MAGIC.to_vec();
        file.extend_from_slice(&[1, 0]);
        let padded = format!("{header:<117}\n");
        file.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        file.extend_from_slice(padded.as_bytes());
        file.extend_from_slice(&[0; 48]);
        file
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "inner dimensions differ",
            multipart_body(&[
                matmul(),
                part("a", a.clone()),
                part("b", npy_matrix(4, 2, &[1.0; 8])),
            ]),
            400,
            "bad_shape",
        ),
        (
            "B is float64",
            multipart_body(&[matmul(), part("a", a.clone()), part("b", f64_npy)]),
            400,
            "not_f32",
        ),
        (
            "a 1-D array",
            multipart_body(&[
                matmul(),
                part("a", npy::write_f32(&[12], &[0; 48])),
                part("b", b.clone()),
            ]),
            400,
            "bad_shape",
        ),
        (
            "the .npy data is cut short",
            multipart_body(&[
                matmul(),
                part("a", a[..a.len() - 4].to_vec()),
                part("b", b.clone()),
            ]),
            400,
            "bad_npy",
        ),
        (
            "no B",
            multipart_body(&[matmul(), part("a", a.clone())]),
            400,
            "missing_input",
        ),
        (
            "an extra part",
            multipart_body(&[
                matmul(),
                part("a", a.clone()),
                part("b", b.clone()),
                part("c", b.clone()),
            ]),
            400,
            "unexpected_part",
        ),
        (
            "no job part",
            multipart_body(&[part("a", a.clone()), part("b", b.clone())]),
            400,
            "bad_job",
        ),
        (
            "an unknown job kind",
            multipart_body(&[job_part(json!({"kind": "sort"})), part("a", a.clone())]),
            400,
            "bad_job",
        ),
        (
            "a WGSL that does not compile",
            multipart_body(&[
                job_part(json!({
                    "kind": "kernel", "wgsl": "fn main( {", "inputs": [{"name": "x", "binding": 0}],
                    "output": {"binding": 1, "bytes": 4}, "workgroups": [1, 1, 1]
                })),
                part("x", vec![0; 4]),
            ]),
            400,
            "invalid_kernel",
        ),
    ];
    for (what, body, status, code) in cases {
        let reply = submit(&relay, Some(&key), body).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.assert_error(status, code);
    }

    // A truncated upload: the body ends in the middle of a part.
    let mut cut = multipart_body(&[matmul(), part("a", a.clone()), part("b", b.clone())]);
    cut.truncate(cut.len() - 40);
    submit(&relay, Some(&key), cut)
        .await
        .assert_error(400, "bad_upload");

    // Not multipart at all.
    let json_body = Request::builder()
        .method(Method::POST)
        .uri("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from("{\"kind\": \"matmul\"}"))
        .unwrap();
    relay
        .send(json_body)
        .await
        .assert_error(415, "not_multipart");

    assert_eq!(stored(&relay).await, before, "nothing refused was stored");
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let relay = TestRelay::with_config(|config| config.max_upload_bytes = 1000);
    let key = relay.create_api_key("lab", 1000).await;
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(20, 20, &[1.0; 400])),
        part("b", npy_matrix(20, 20, &[1.0; 400])),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    reply.assert_error(413, "upload_too_large");
    let message = error_message(&reply);
    assert!(
        message.contains("0.00 MiB (1000 bytes)"),
        "names the limit in MiB: {message}"
    );
    assert!(
        message.contains("split the job") && message.contains("max_upload_bytes"),
        "says what to do: {message}"
    );
    assert!(message.contains("GLOWWORM_MAX_UPLOAD_BYTES"), "{message}");
    assert_eq!(stored(&relay).await, (0, 0));

    // A whole number of MiB, and the size seen when the request says it (Content-Length).
    let relay = TestRelay::with_config(|config| config.max_upload_bytes = 1 << 20);
    let key = relay.create_api_key("lab", 1000).await;
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(512, 512, &[1.0; 512 * 512])),
        part("b", npy_matrix(512, 512, &[1.0; 512 * 512])),
    ]);
    let length = body.len();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/jobs")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header(header::CONTENT_LENGTH, length)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(body))
        .unwrap();
    let reply = relay.send(request).await;
    reply.assert_error(413, "upload_too_large");
    let message = error_message(&reply);
    assert!(message.contains("limit of 1 MiB"), "{message}");
    assert!(
        message.contains(&format!("({length} bytes)")),
        "names the size seen: {message}"
    );
    assert_eq!(stored(&relay).await, (0, 0));
}

fn error_message(reply: &Reply) -> String {
    let body: serde_json::Value = reply.json();
    body["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn keys_are_required_checked_and_revocable() {
    let (relay, key) = relay_with_key(1000).await;
    let body = || {
        multipart_body(&[
            job_part(json!({"kind": "matmul"})),
            part("a", npy_matrix(2, 2, &[1.0; 4])),
            part("b", npy_matrix(2, 2, &[1.0; 4])),
        ])
    };
    submit(&relay, None, body())
        .await
        .assert_error(401, "missing_api_key");
    submit(&relay, Some("gw_not-a-key-the-relay-issued"), body())
        .await
        .assert_error(401, "bad_api_key");
    submit(&relay, Some("sk-wrong-scheme"), body())
        .await
        .assert_error(401, "bad_api_key");
    send(&relay, Method::GET, "/v1/jobs", None, "*/*")
        .await
        .assert_error(401, "missing_api_key");

    let job: JobStatus = submit(&relay, Some(&key), body()).await.json();
    let now = relay.clock_now();
    relay
        .state
        .db
        .call(move |conn| {
            requesters::revoke(conn, "lab", now)
                .map_err(|e| glowworm_relay::ApiError::Internal(e.to_string()))
        })
        .await
        .unwrap();
    submit(&relay, Some(&key), body())
        .await
        .assert_error(403, "revoked_api_key");
    send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .assert_error(403, "revoked_api_key");

    // Only the key's hash is stored.
    let stored_hash: String = relay
        .state
        .db
        .read(|conn| Ok(conn.query_row("SELECT key_hash FROM requesters", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(!stored_hash.contains(&key[3..]));
    assert_eq!(stored_hash.len(), 64);
}

#[tokio::test]
async fn a_requester_cannot_see_or_cancel_another_requesters_job() {
    let (relay, key) = relay_with_key(1000).await;
    let other = relay.create_api_key("rival", 1000).await;
    // Demo jobs stay public.
    let demo = relay.queue_demo_job().await;
    assert_eq!(relay.job(demo.job_id).await.state, "queued");
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(2, 2, &[1.0; 4])),
        part("b", npy_matrix(2, 2, &[1.0; 4])),
    ]);
    let job: JobStatus = submit(&relay, Some(&key), body).await.json();
    for (method, path) in [
        (Method::GET, format!("/v1/jobs/{}", job.id)),
        (Method::DELETE, format!("/v1/jobs/{}", job.id)),
        (Method::GET, format!("/v1/jobs/{}/result", job.id)),
    ] {
        send(&relay, method.clone(), &path, Some(&other), "*/*")
            .await
            .assert_error(403, "not_your_job");
        send(&relay, method, &path, None, "*/*")
            .await
            .assert_error(401, "missing_api_key");
    }
    let theirs: JobList = send(&relay, Method::GET, "/v1/jobs", Some(&other), "*/*")
        .await
        .json();
    assert!(theirs.jobs.is_empty());
    send(&relay, Method::GET, "/v1/jobs/999", Some(&key), "*/*")
        .await
        .assert_error(404, "unknown_job");
}

#[tokio::test]
async fn a_cancelled_job_is_leased_no_more_and_credits_nothing_more() {
    let (relay, key) = relay_with_key(1000).await;
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(128, 16, &[0.5; 128 * 16])),
        part("b", npy_matrix(16, 64, &[0.25; 16 * 64])),
    ]);
    let job: JobStatus = submit(&relay, Some(&key), body).await.json();
    assert_eq!(job.units_total, 2);
    let early = Contributor::new();
    early.earn(&relay).await;
    let late = Contributor::new();
    let lease = late.lease(&relay).await.expect("the second unit");
    let output = late.compute(&relay, &lease).await;
    let ledger_before = relay
        .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
        .await;

    let cancelled: JobStatus = send(
        &relay,
        Method::DELETE,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .json();
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!((cancelled.units_verified, cancelled.units_leased), (1, 0));

    late.submit(&relay, &lease, &output)
        .await
        .assert_error(410, "job_cancelled");
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        ledger_before
    );
    assert!(
        Contributor::new().lease(&relay).await.is_none(),
        "nothing left to lease"
    );
    send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .assert_error(409, "job_cancelled");
    // Cancelling again changes nothing.
    let again: JobStatus = send(
        &relay,
        Method::DELETE,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .json();
    assert_eq!(again, cancelled);
}

#[tokio::test]
async fn the_quota_bounds_a_keys_queued_units() {
    let (relay, key) = relay_with_key(4).await;
    let four_units = || {
        multipart_body(&[
            job_part(json!({"kind": "matmul"})),
            part("a", npy_matrix(128, 8, &[1.0; 128 * 8])),
            part("b", npy_matrix(8, 128, &[1.0; 8 * 128])),
        ])
    };
    let first: JobStatus = submit(&relay, Some(&key), four_units()).await.json();
    assert_eq!(first.units_total, 4);
    submit(&relay, Some(&key), four_units())
        .await
        .assert_error(429, "quota_exceeded");
    // Work done frees the quota.
    compute_everything(&relay).await;
    let second = submit(&relay, Some(&key), four_units()).await;
    assert_eq!(second.status, StatusCode::CREATED);
}

/// The bytes of a kernel lease's inputs, fetched over HTTP and checked against their hashes.
async fn kernel_inputs(relay: &TestRelay, lease: &glowworm_protocol::wire::Lease) -> Vec<Vec<f32>> {
    let mut inputs = Vec::new();
    for blob in &lease.inputs {
        let reply = relay.get(&format!("/v1/blobs/{}", blob.hash)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            glowworm_protocol::hash::ContentHash::of(&reply.body),
            blob.hash
        );
        inputs.push(bytes_to_f32s(&reply.body).unwrap());
    }
    inputs
}

#[tokio::test]
async fn a_custom_kernel_job_is_replicated_verified_and_assembled_in_unit_order() {
    use glowworm_protocol::kernels::custom::samples;
    let (relay, key) = relay_with_key(1000).await;
    let (n, units) = (256u32, 4u32);
    let x = matmul::sample_matrix(n * units, 7);
    let y = matmul::sample_matrix(n * units, 8);
    let spec = serde_json::to_value(glowworm_protocol::wire::JobSpec::Kernel(
        samples::saxpy_spec(n, units),
    ))
    .unwrap();
    let body = multipart_body(&[
        job_part(spec),
        part("x", f32s_to_bytes(&x)),
        part("y", f32s_to_bytes(&y)),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let job: JobStatus = reply.json();
    assert_eq!((job.kind.as_str(), job.units_total), ("kernel", 4));
    assert_eq!(job.output_bytes, 4 * (n * units) as u64);

    // The kernel is served like a catalogue kernel.
    let honest = [Contributor::at("10.0.1.1"), Contributor::at("10.0.2.1")];
    let mut credited = 0;
    for contributor in &honest {
        while let Some(lease) = contributor.lease(&relay).await {
            let dispatch = lease
                .work
                .dispatch()
                .expect("a kernel lease says how to dispatch");
            assert_eq!(dispatch.output_binding, 2);
            assert_eq!(lease.work.shape(), None);
            let source = relay
                .get(&format!("/v1/kernels/{}", lease.kernel.hash))
                .await;
            assert_eq!(source.status, StatusCode::OK);
            assert_eq!(source.json::<Value>()["wgsl"], samples::SAXPY_WGSL);
            let inputs = kernel_inputs(&relay, &lease).await;
            let bindings: Vec<_> = lease.inputs.iter().map(|i| i.binding).collect();
            assert_eq!(bindings, [Some(0), Some(1)]);
            let output = f32s_to_bytes(&samples::saxpy_reference(&inputs[0], &inputs[1]));
            let receipt = common::accepted(&contributor.submit(&relay, &lease, &output).await);
            credited += receipt.credited;
        }
    }
    relay.assembled(job.id).await;
    let status: JobStatus = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "*/*",
    )
    .await
    .json();
    assert_eq!((status.state.as_str(), status.units_verified), ("done", 4));
    // The second replica's receipt says what both were credited; once the pair agrees, both
    // are: one credit per shader invocation.
    assert_eq!(credited, 4 * 256);
    for contributor in &honest {
        assert_eq!(contributor.balance(&relay).await, 4 * 256);
    }
    let file = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        npy_media(),
    )
    .await;
    let array = npy::parse_f32(&file.body).unwrap();
    assert_eq!(array.shape, vec![(n * units) as usize]);
    assert_eq!(
        bytes_to_f32s(array.data).unwrap(),
        samples::saxpy_reference(&x, &y)
    );
}

fn npy_media() -> &'static str {
    glowworm_relay::http::job_api::NPY
}

#[tokio::test]
async fn a_replica_that_disagrees_is_outvoted_and_never_credited() {
    use glowworm_protocol::kernels::custom::samples;
    let (relay, key) = relay_with_key(1000).await;
    let x = matmul::sample_matrix(64, 1);
    let y = matmul::sample_matrix(64, 2);
    let spec = serde_json::to_value(glowworm_protocol::wire::JobSpec::Kernel(
        samples::saxpy_spec(64, 1),
    ))
    .unwrap();
    let body = multipart_body(&[
        job_part(spec),
        part("x", f32s_to_bytes(&x)),
        part("y", f32s_to_bytes(&y)),
    ]);
    let job: JobStatus = submit(&relay, Some(&key), body).await.json();
    let good = f32s_to_bytes(&samples::saxpy_reference(&x, &y));
    let mut bad = good.clone();
    bad[0] ^= 0x01;

    let cheater = Contributor::at("10.0.3.1");
    let lease = cheater.lease(&relay).await.unwrap();
    assert_eq!(
        cheater.submit(&relay, &lease, &bad).await.status,
        StatusCode::OK,
        "pending"
    );
    for ip in ["10.0.4.1", "10.0.5.1"] {
        let honest = Contributor::at(ip);
        let lease = honest
            .lease(&relay)
            .await
            .expect("another replica is wanted");
        common::accepted(&honest.submit(&relay, &lease, &good).await);
    }
    relay.assembled(job.id).await;
    assert_eq!(cheater.balance(&relay).await, 0);
    let raw = send(
        &relay,
        Method::GET,
        &format!("/v1/jobs/{}/result", job.id),
        Some(&key),
        "*/*",
    )
    .await;
    assert_eq!(raw.body, good, "the output is the majority's");
}

#[tokio::test]
async fn kernels_that_do_not_fit_their_declaration_are_refused() {
    use glowworm_protocol::kernels::custom::samples;
    let (relay, key) = relay_with_key(1000).await;
    let upload = |spec: glowworm_protocol::wire::KernelSpec, x_bytes: usize| {
        multipart_body(&[
            job_part(serde_json::to_value(glowworm_protocol::wire::JobSpec::Kernel(spec)).unwrap()),
            part("x", vec![0; x_bytes]),
            part("y", vec![0; x_bytes]),
        ])
    };
    let mut wrong_binding = samples::saxpy_spec(64, 1);
    wrong_binding.inputs[1].binding = 5;
    let mut huge_dispatch = samples::saxpy_spec(64, 1);
    huge_dispatch.workgroups = [65_535, 65_535, 1];
    let mut uneven = samples::saxpy_spec(64, 3);
    uneven.units = 3;
    // Found with the `wgsl` fuzz target: a chain this deep overflowed naga's stack and aborted
    // the relay.
    let mut too_deep = samples::saxpy_spec(64, 1);
    too_deep.wgsl = too_deep.wgsl.replace(
        "out[i] = A * x[i] + y[i];",
        &format!("out[i] = select(0.0, 1.0, {}true);", "!".repeat(30_000)),
    );
    let cases = [
        (
            "a binding the shader does not have",
            upload(wrong_binding, 256),
            "invalid_kernel",
        ),
        (
            "a dispatch far too large",
            upload(huge_dispatch, 256),
            "invalid_kernel",
        ),
        (
            "inputs that do not split into units",
            upload(uneven, 256),
            "bad_input",
        ),
        (
            "an expression nested too deeply",
            upload(too_deep, 256),
            "invalid_kernel",
        ),
    ];
    for (what, body, code) in cases {
        let reply = submit(&relay, Some(&key), body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        reply.assert_error(400, code);
    }
    assert_eq!(stored(&relay).await, (0, 0));
}
