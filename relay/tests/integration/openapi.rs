//! The OpenAPI document describes exactly the routes the router serves, with their errors, and
//! the wire types' shapes (replies are checked against it in the other tests too).

use crate::common::{TestRelay, check_schema, openapi};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use glowworm_relay::routes;
use serde_json::Value;
use std::collections::BTreeSet;

#[test]
fn the_document_lists_every_route_and_no_other() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_operation_documents_its_replies_and_every_reference_resolves() {
    let doc = openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("200") || responses.contains_key("201"),
                "{method} {path} documents its success"
            );
            if method == "post" && operation.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
            }
            if path.contains('{') {
                assert!(
                    responses.contains_key("400") && responses.contains_key("404")
                        || path == "/v1/leases/{lease_id}/release"
                        // A well-formed address nothing was credited to has zeros, not 404.
                        || path == "/v1/accounts/{address}"
                        || path == "/v1/partners/{address}"
                        || path == "/v1/payouts/{address}",
                    "{method} {path} documents bad and unknown parameters"
                );
            }
        }
    }
    let text = glowworm_relay::OPENAPI_JSON;
    for reference in text.split("\"$ref\": \"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let pointer = target.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "{target} resolves");
    }
}

#[test]
fn the_schemas_fit_the_wire_types() {
    use glowworm_protocol::hash::ContentHash;
    use glowworm_protocol::wire::*;
    const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let hash = ContentHash([7; 32]);
    let shape = MatmulShape { m: 1, n: 2, k: 3 };
    let mut samples: Vec<(&str, Value)> = vec![
        (
            "Lease",
            serde_json::to_value(Lease {
                lease_id: "l".into(),
                unit_id: 1,
                job_id: 2,
                kernel: KernelRef {
                    id: "k".into(),
                    hash,
                },
                work: LeaseWork::Matmul { shape },
                inputs: vec![BlobRef {
                    name: "a".into(),
                    hash,
                    bytes: 12,
                    binding: None,
                }],
                output_bytes: 8,
                flop: 12,
                deadline_unix_ms: 5,
            })
            .unwrap(),
        ),
        (
            "JobStatus",
            serde_json::to_value(JobStatus {
                id: 1,
                kind: "matmul".into(),
                state: "done".into(),
                shape: Some(shape),
                output_bytes: 8,
                created_at_unix_ms: 4,
                progress: 1.0,
                units_total: 1,
                units_verified: 1,
                units_pending: 0,
                units_leased: 0,
                units_failed: 0,
                output_hash: Some(hash),
                failure: None,
                waiting: vec![glowworm_protocol::wire::Waiting {
                    reason: "replicas".into(),
                    units: 1,
                    detail: "waits".into(),
                }],
                credits_reserved: 10,
                credits_paid: 8,
                credits_returned: 2,
            })
            .unwrap(),
        ),
        (
            "ResultSubmission",
            serde_json::to_value(ResultSubmission {
                lease_id: "l".into(),
                unit_id: 1,
                public_key: "ab".repeat(32),
                output: "AAAA".into(),
                signature: "00".repeat(64),
            })
            .unwrap(),
        ),
        (
            "LeaseRequest",
            serde_json::to_value(LeaseRequest {
                public_key: "ab".repeat(32),
                signed_at_ms: 1_700_000_000_000,
                signature: "00".repeat(64),
                adapter: Some(AdapterClass {
                    vendor: "nvidia".into(),
                    architecture: "hopper".into(),
                }),
                partner: None,
                origin: None,
            })
            .unwrap(),
        ),
        (
            "LeaseRequest",
            serde_json::to_value(LeaseRequest {
                public_key: "ab".repeat(32),
                signed_at_ms: 1_700_000_000_000,
                signature: "00".repeat(64),
                adapter: None,
                partner: Some(ADDRESS.into()),
                origin: Some("https://blog.example".into()),
            })
            .unwrap(),
        ),
        (
            "PartnerInfo",
            serde_json::to_value(PartnerInfo {
                address: ADDRESS.into(),
                credits: 10,
                contributors: 1,
                units: 2,
                sites: vec![PartnerSite {
                    origin: "https://blog.example".into(),
                    credits: 10,
                    contributors: 1,
                    units: 2,
                }],
            })
            .unwrap(),
        ),
        (
            "ReleaseRequest",
            serde_json::to_value(ReleaseRequest {
                public_key: "ab".repeat(32),
                signature: "00".repeat(64),
                reason: Some(glowworm_protocol::wire::ReleaseReason::GpuFailed),
            })
            .unwrap(),
        ),
        (
            "KernelSource",
            serde_json::to_value(glowworm_protocol::kernels::matmul::TILED.source()).unwrap(),
        ),
        (
            "ContributorInfo",
            serde_json::to_value(ContributorInfo {
                public_key: "ab".repeat(32),
                credits: 1,
                units_verified: 1,
                flop_verified: 1,
                first_seen_unix_ms: 1,
                last_seen_unix_ms: 2,
                linked_address: Some(ADDRESS.into()),
                pending_credits: 3,
                reputation: Reputation {
                    results_valid: 4,
                    results_invalid: 1,
                    consecutive_valid: 2,
                    trusted: false,
                    strikes: 1,
                    quarantined: true,
                    quarantined_at_unix_ms: Some(9),
                },
            })
            .unwrap(),
        ),
        (
            "NonceReply",
            serde_json::to_value(NonceReply {
                nonce: "a".repeat(20),
                expires_unix_ms: 1,
            })
            .unwrap(),
        ),
        (
            "LinkRequest",
            serde_json::to_value(LinkRequest {
                message: "m".into(),
                signature: format!("0x{}", "00".repeat(65)),
                public_key: "ab".repeat(32),
                session_signature: "00".repeat(64),
            })
            .unwrap(),
        ),
        (
            "LinkReply",
            serde_json::to_value(LinkReply {
                address: ADDRESS.into(),
                public_key: "ab".repeat(32),
                credits_moved: 5,
                balance: 5,
            })
            .unwrap(),
        ),
        (
            "AccountInfo",
            serde_json::to_value(AccountInfo {
                address: ADDRESS.into(),
                credits: 5,
                units_verified: 1,
                flop_verified: 5,
                pending_credits: 0,
                reputation: Reputation::default(),
                linked_sessions: vec![LinkedSession {
                    public_key: "ab".repeat(32),
                    chain_id: 1,
                    linked_at_unix_ms: 3,
                }],
                entries: vec![
                    LedgerEntry {
                        id: 2,
                        amount: 5,
                        kind: "unit_verified".into(),
                        unit_id: Some(1),
                        public_key: Some("ab".repeat(32)),
                        created_at_unix_ms: 4,
                    },
                    LedgerEntry {
                        id: 1,
                        amount: 0,
                        kind: "link_in".into(),
                        unit_id: None,
                        public_key: None,
                        created_at_unix_ms: 3,
                    },
                ],
                next_before: Some(1),
            })
            .unwrap(),
        ),
        // A custom kernel's lease.
        (
            "Lease",
            serde_json::to_value(Lease {
                lease_id: "l".into(),
                unit_id: 1,
                job_id: 2,
                kernel: KernelRef {
                    id: "k".into(),
                    hash,
                },
                work: LeaseWork::Dispatch(Dispatch {
                    workgroups: [4, 1, 1],
                    output_binding: 1,
                }),
                inputs: vec![BlobRef {
                    name: "x".into(),
                    hash,
                    bytes: 16,
                    binding: Some(0),
                }],
                output_bytes: 16,
                flop: 64,
                deadline_unix_ms: 5,
            })
            .unwrap(),
        ),
    ];
    samples.push((
        "Budget",
        serde_json::to_value(glowworm_protocol::wire::Budget {
            available: 5,
            reserved: 10,
            price_per_gflop: 1_000_000_000,
            operator_fee_bps: 100,
            partner_share_bps: 1000,
            token_units_per_credit: 1,
            deposit_reference: format!("0x{}", "00".repeat(32)),
            payout_contract: None,
        })
        .unwrap(),
    ));
    for (name, value) in &samples {
        check_schema(value, name);
    }
    // And the checker does reject what does not fit.
    let mut lease = samples[0].1.clone();
    lease.as_object_mut().unwrap().remove("flop");
    assert!(std::panic::catch_unwind(|| check_schema(&lease, "Lease")).is_err());
    let (name, request) = &samples[3];
    assert_eq!(*name, "LeaseRequest");
    for signature in ["00".repeat(63), "zz".repeat(64)] {
        let mut request = request.clone();
        request["signature"] = signature.into();
        assert!(std::panic::catch_unwind(|| check_schema(&request, "LeaseRequest")).is_err());
    }
    let mut unsigned = request.clone();
    unsigned.as_object_mut().unwrap().remove("signed_at_ms");
    assert!(std::panic::catch_unwind(|| check_schema(&unsigned, "LeaseRequest")).is_err());
}

#[tokio::test]
async fn every_documented_route_is_answered_by_its_handler() {
    let relay = TestRelay::new();
    for (method, path) in routes() {
        let concrete = path
            .replace("{public_key}", &"ab".repeat(32))
            .replace("{lease_id}", "0000")
            .replace("{hash}", &"ab".repeat(32))
            .replace("{id}", "1")
            .replace("{address}", &format!("0x{}", "ab".repeat(20)));
        let request = Request::builder()
            .method(method.clone())
            .uri(&concrete)
            .header("content-type", "application/json")
            .body(Body::from(if method == Method::POST { "{}" } else { "" }))
            .unwrap();
        let reply = relay.send(request).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if reply.status == StatusCode::NOT_FOUND {
            let body: Value = reply.json();
            assert_ne!(body["error"]["code"], "no_such_route", "{method} {path}");
        }
    }
    let served = relay.get("/v1/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers["content-type"], "application/json");
    assert_eq!(served.json::<Value>(), openapi());
}
