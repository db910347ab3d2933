//! Every way a request can be wrong gets its own 4xx and a JSON body naming it, and changes
//! nothing: no credit, no stored result or blob, and the lease stays open for the honest result.

use crate::common::{Contributor, TestRelay, assert_documented};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use glowworm_protocol::encoding::to_base64;
use glowworm_protocol::wire::Lease;

/// A relay with one leased unit and its correct output, ready to be submitted.
async fn leased() -> (TestRelay, Contributor, Lease, Vec<u8>) {
    let relay = TestRelay::with_config(|c| c.max_body_bytes = 64 * 1024);
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let lease = alice.lease(&relay).await.unwrap();
    let output = alice.compute(&relay, &lease).await;
    (relay, alice, lease, output)
}

#[tokio::test]
async fn each_bad_submission_is_named_and_changes_nothing() {
    let (relay, alice, lease, output) = leased().await;
    let mallory = Contributor::new();
    let good = alice.submission(&lease, &output);
    let before = relay.footprint().await;

    let mut cases: Vec<(&str, serde_json::Value, u16, &str)> = Vec::new();
    let mut with = |name, change: &dyn Fn(&mut serde_json::Value), status, code| {
        let mut body = serde_json::to_value(&good).unwrap();
        change(&mut body);
        cases.push((name, body, status, code));
    };
    with(
        "missing field",
        &|b| {
            b.as_object_mut().unwrap().remove("signature");
        },
        400,
        "malformed_request",
    );
    with(
        "unknown field",
        &|b| b["extra"] = 1.into(),
        400,
        "malformed_request",
    );
    with(
        "unit id of the wrong type",
        &|b| b["unit_id"] = "one".into(),
        400,
        "malformed_request",
    );
    with(
        "bad hex key",
        &|b| b["public_key"] = "zz".repeat(32).into(),
        400,
        "bad_public_key",
    );
    with(
        "short key",
        &|b| b["public_key"] = "abcd".into(),
        400,
        "bad_public_key",
    );
    with(
        "unknown lease",
        &|b| b["lease_id"] = "00".repeat(16).into(),
        404,
        "unknown_lease",
    );
    with(
        "wrong unit id",
        &|b| b["unit_id"] = (lease.unit_id + 1).into(),
        400,
        "unit_mismatch",
    );
    let mallory_key = mallory.public_key();
    let mallory_signature =
        mallory
            .key
            .sign_result(lease.unit_id, &lease.lease_id, &lease.kernel.hash, &output);
    with(
        "another contributor's lease",
        &|b| {
            b["public_key"] = mallory_key.clone().into();
            b["signature"] = mallory_signature.clone().into();
        },
        403,
        "wrong_contributor",
    );
    with(
        "output not base64",
        &|b| b["output"] = "not base64!".into(),
        400,
        "bad_output",
    );
    let truncated = to_base64(&output[..output.len() - 4]);
    with(
        "truncated output",
        &|b| b["output"] = truncated.clone().into(),
        400,
        "bad_output",
    );
    with(
        "signature not hex",
        &|b| b["signature"] = "xyz".into(),
        400,
        "bad_signature_format",
    );
    // Signed over other bytes than those submitted.
    let mut other = output.clone();
    other[0] ^= 1;
    let wrong_signature =
        alice
            .key
            .sign_result(lease.unit_id, &lease.lease_id, &lease.kernel.hash, &other);
    with(
        "signature over another output",
        &|b| b["signature"] = wrong_signature.clone().into(),
        403,
        "bad_signature",
    );
    // Signed by someone else, claiming to be the holder.
    with(
        "signature by another key",
        &|b| b["signature"] = mallory_signature.clone().into(),
        403,
        "bad_signature",
    );

    for (name, body, status, code) in cases {
        let reply = relay
            .post_raw("/v1/results", serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(
            (reply.status.as_u16(), name),
            (status, name),
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.assert_error(status, code);
        assert_eq!(relay.footprint().await, before, "{name} changed nothing");
    }

    // Bodies that are not JSON at all.
    relay
        .post_raw("/v1/results", "{\"lease_id\": ")
        .await
        .assert_error(400, "malformed_request");
    relay
        .post_raw("/v1/results", "garbage")
        .await
        .assert_error(400, "malformed_request");
    let no_content_type = Request::post("/v1/results")
        .body(Body::from(serde_json::to_vec(&good).unwrap()))
        .unwrap();
    relay
        .send(no_content_type)
        .await
        .assert_error(415, "unsupported_media_type");
    // Larger than max_body_bytes (64 KiB here).
    let mut huge = serde_json::to_value(&good).unwrap();
    huge["output"] = "A".repeat(100 * 1024).into();
    let reply = relay
        .post_raw("/v1/results", serde_json::to_vec(&huge).unwrap())
        .await;
    reply.assert_error(413, "body_too_large");
    let message =
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        message.contains("limit of 0.06 MiB (65536 bytes)"),
        "names the limit in MiB: {message}"
    );
    assert!(
        message.contains("max_body_bytes") && message.contains("GLOWWORM_MAX_BODY_BYTES"),
        "says what to raise: {message}"
    );
    assert_eq!(relay.footprint().await, before);
    assert_eq!(alice.balance(&relay).await, 0);
    assert_eq!(mallory.balance(&relay).await, 0);

    // After all that, the honest result is still accepted, once.
    let reply = relay.post("/v1/results", &good).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(alice.balance(&relay).await, lease.flop as i64);
}

#[tokio::test]
async fn bad_lease_requests_and_lookups_are_named() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut body = serde_json::to_value(alice.lease_request(&relay)).unwrap();
        change(&mut body);
        body
    };
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        // The key's format is checked before its signature.
        (
            with(&|b| b["public_key"] = "zz".repeat(32).into()),
            400,
            "bad_public_key",
        ),
        (
            with(&|b| b["signature"] = "xyz".into()),
            400,
            "bad_signature_format",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("signature");
            }),
            400,
            "malformed_request",
        ),
        // The time is signed too: another one breaks the signature.
        (
            with(&|b| b["signed_at_ms"] = 1.into()),
            403,
            "bad_signature",
        ),
    ];
    for (body, status, code) in cases {
        let reply = relay.post("/v1/leases", &body).await;
        reply.assert_error(status, code);
        assert_documented(&reply, "post", "/v1/leases");
    }
    relay
        .post("/v1/leases", &serde_json::json!({ "key": "x" }))
        .await
        .assert_error(400, "malformed_request");
    relay
        .post_raw("/v1/leases", "{")
        .await
        .assert_error(400, "malformed_request");
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM leases").await,
        0,
        "no lease was issued"
    );
    assert_eq!(relay.count("SELECT COUNT(*) FROM contributors").await, 0);

    let unknown_hash = "ab".repeat(32);
    relay
        .get("/v1/blobs/xyz")
        .await
        .assert_error(400, "bad_hash");
    relay
        .get(&format!("/v1/blobs/{unknown_hash}"))
        .await
        .assert_error(404, "unknown_blob");
    relay
        .get("/v1/kernels/123")
        .await
        .assert_error(400, "bad_hash");
    relay
        .get(&format!("/v1/kernels/{unknown_hash}"))
        .await
        .assert_error(404, "unknown_kernel");
    relay
        .get("/v1/jobs/first")
        .await
        .assert_error(400, "bad_path");
    relay
        .get("/v1/jobs/999")
        .await
        .assert_error(404, "unknown_job");
    relay
        .get("/v1/contributors/nothex")
        .await
        .assert_error(400, "bad_public_key");
    relay
        .get(&format!(
            "/v1/contributors/{}",
            Contributor::new().public_key()
        ))
        .await
        .assert_error(404, "unknown_contributor");
    relay
        .get("/v1/no/such/route")
        .await
        .assert_error(404, "no_such_route");
    relay
        .send(Request::delete("/v1/health").body(Body::empty()).unwrap())
        .await
        .assert_error(405, "method_not_allowed");
    relay
        .send(Request::get("/v1/leases").body(Body::empty()).unwrap())
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn a_busy_database_is_503_unavailable() {
    let relay = TestRelay::new();
    // Another process holds the write lock (the relay waits 5 s for it, then gives up).
    let other = rusqlite::Connection::open(&relay.state.config.database).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let reply = Contributor::new().lease_reply(&relay).await;
    reply.assert_error(503, "unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(relay.get("/v1/stats").await.status, StatusCode::OK);
}
