//! The happy path: contributors lease units, compute them, and are verified and credited; a
//! whole job completes and its assembled output is the product.

use crate::common::{Contributor, TestRelay, check_schema};
use axum::http::StatusCode;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{ContributorInfo, JobStatus, MatmulShape, ResultReceipt, Stats};
use glowworm_relay::work::demo::demo_matrices;
use serde_json::Value;
use std::collections::HashSet;

#[tokio::test]
async fn a_verified_result_is_credited_once_by_its_flop_count() {
    let relay = TestRelay::new();
    let job = relay.queue_demo_job().await;
    let alice = Contributor::new();

    let lease = alice.lease(&relay).await.expect("a unit is pending");
    assert_eq!(lease.job_id, job.job_id);
    assert_eq!(lease.kernel.hash, matmul::TILED.hash());
    assert_eq!(
        lease.work.shape().unwrap(),
        MatmulShape {
            m: 64,
            n: 64,
            k: 64
        }
    );
    assert_eq!(lease.flop, 2 * 64 * 64 * 64);
    assert_eq!(lease.output_bytes, 64 * 64 * 4);
    assert_eq!(lease.lease_id.len(), 32, "128 random bits in hex");
    assert_eq!(
        lease.deadline_unix_ms,
        relay.clock_now() + 60_000,
        "deadline is now + lease_seconds"
    );

    let output = alice.compute(&relay, &lease).await;
    let reply = relay
        .post("/v1/results", &alice.submission(&lease, &output))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json::<Value>());
    check_schema(&reply.json(), "ResultReceipt");
    let mut receipt: ResultReceipt = reply.json();
    let flop = 2 * 64 * 64 * 64;
    // The relay signs the credit, by the key it names in its stats; a forged copy fails.
    let signed = receipt
        .receipt
        .take()
        .expect("a credit comes with a signed receipt");
    let relay_key = relay.state.relay_key.public_hex();
    assert_eq!(
        (
            signed.unit_id,
            signed.account.as_str(),
            signed.credited,
            signed.relay_key.as_str()
        ),
        (
            lease.unit_id,
            alice.public_key().as_str(),
            flop,
            relay_key.as_str()
        )
    );
    glowworm_protocol::signing::verify_credit(&signed).expect("the relay's signature checks out");
    for forged in [
        glowworm_protocol::wire::SignedCredit {
            credited: flop * 2,
            ..signed.clone()
        },
        glowworm_protocol::wire::SignedCredit {
            account: "0x0000000000000000000000000000000000000001".into(),
            ..signed.clone()
        },
        glowworm_protocol::wire::SignedCredit {
            relay_key: alice.public_key(),
            ..signed.clone()
        },
    ] {
        assert!(glowworm_protocol::signing::verify_credit(&forged).is_err());
    }
    assert_eq!(
        receipt,
        ResultReceipt {
            unit_id: lease.unit_id,
            status: "verified".into(),
            credited: flop,
            pending: 0,
            balance: flop,
            flop: flop as u64,
            receipt: None,
        }
    );

    // The ledger holds exactly one row for it, and the balance is the ledger's sum.
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        1
    );
    assert_eq!(
        relay
            .count("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'unit_verified'")
            .await,
        flop
    );
    // The output is stored by its hash and the unit is verified.
    let stored = relay
        .get(&format!("/v1/blobs/{}", ContentHash::of(&output)))
        .await;
    assert_eq!(stored.body, output);

    let info = relay
        .get(&format!("/v1/contributors/{}", alice.public_key()))
        .await;
    assert_eq!(info.status, StatusCode::OK);
    check_schema(&info.json(), "ContributorInfo");
    let info: ContributorInfo = info.json();
    assert_eq!(info.credits, flop);
    assert_eq!(info.units_verified, 1);
    assert_eq!(info.flop_verified, flop);
    assert_eq!(info.last_seen_unix_ms, relay.clock_now());

    // The same key in upper case is the same contributor.
    let upper = relay
        .get(&format!(
            "/v1/contributors/{}",
            alice.public_key().to_uppercase()
        ))
        .await;
    assert_eq!(upper.json::<ContributorInfo>().credits, flop);

    let stats = relay.get("/v1/stats").await;
    check_schema(&stats.json(), "Stats");
    let stats: Stats = stats.json();
    assert_eq!(
        stats,
        Stats {
            contributors_online: 1,
            units_completed: 1,
            units_pending: 3,
            units_leased: 0,
            units_failed: 0,
            flop_verified: flop,
            credits_issued: flop,
            jobs_done: 0,
            relay_key: relay.state.relay_key.public_hex(),
        }
    );
    // A contributor not seen for a minute is no longer online.
    relay.advance(std::time::Duration::from_secs(61));
    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(stats.contributors_online, 0);

    // Replaying the accepted submission is refused and credits nothing more.
    let replay = relay
        .post("/v1/results", &alice.submission(&lease, &output))
        .await;
    replay.assert_error(409, "already_submitted");
    assert_eq!(alice.balance(&relay).await, flop);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        1
    );
    assert_eq!(relay.count("SELECT COUNT(*) FROM results").await, 1);
}

#[tokio::test]
async fn a_whole_job_completes_and_its_output_is_the_product() {
    let relay = TestRelay::new();
    let job = relay.queue_demo_job().await;
    let (alice, bob) = (Contributor::new(), Contributor::new());

    let job_status: JobStatus = relay.get(&format!("/v1/jobs/{}", job.job_id)).await.json();
    assert_eq!(
        (
            job_status.state.as_str(),
            job_status.units_total,
            job_status.units_pending
        ),
        ("queued", 4, 4)
    );

    // Both contributors work, alternately, until there is no more work.
    let mut a_panels = HashSet::new();
    let mut b_panels = HashSet::new();
    let mut shapes = Vec::new();
    let mut units = 0;
    for turn in 0.. {
        let who = if turn % 2 == 0 { &alice } else { &bob };
        let Some(lease) = who.lease(&relay).await else {
            break;
        };
        a_panels.insert(lease.inputs[0].hash);
        b_panels.insert(lease.inputs[1].hash);
        shapes.push((lease.work.shape().unwrap().m, lease.work.shape().unwrap().n));
        let output = who.compute(&relay, &lease).await;
        let reply = relay
            .post("/v1/results", &who.submission(&lease, &output))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        units += 1;
    }
    assert_eq!(units, 4);
    // Two row panels of A and two column panels of B, each shared by two units.
    assert_eq!((a_panels.len(), b_panels.len()), (2, 2));
    // Tiles are 64 x 64, narrower at the right edge (96 = 64 + 32).
    assert_eq!(shapes, [(64, 64), (64, 32), (64, 64), (64, 32)]);

    // The output is assembled off the writer, just after the last unit's transaction.
    relay.assembled(job.job_id).await;
    let reply = relay.get(&format!("/v1/jobs/{}", job.job_id)).await;
    check_schema(&reply.json(), "JobStatus");
    let status: JobStatus = reply.json();
    assert_eq!(status.state, "done");
    assert_eq!(
        (
            status.units_total,
            status.units_verified,
            status.units_pending,
            status.units_failed
        ),
        (4, 4, 0, 0)
    );
    let output_hash = status.output_hash.expect("a done job has an output");

    let output = relay.get(&format!("/v1/blobs/{output_hash}")).await;
    assert_eq!(output.status, StatusCode::OK);
    let c = bytes_to_f32s(&output.body).unwrap();
    let shape = MatmulShape {
        m: 128,
        n: 96,
        k: 64,
    };
    let (a, b) = demo_matrices(job.seed, shape);
    let expected = matmul::reference(&a, &b, shape);
    assert_eq!(c.len(), expected.len());
    assert!(
        c == expected,
        "the assembled C is the CPU product of A and B"
    );
    assert_eq!(ContentHash::of(&f32s_to_bytes(&expected)), output_hash);

    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(stats.jobs_done, 1);
    assert_eq!(stats.units_completed, 4);
    assert_eq!(stats.contributors_online, 2);
    let total = 2 * 128 * 96 * 64;
    assert_eq!(stats.flop_verified, total);
    assert_eq!(stats.credits_issued, total);
    assert_eq!(
        alice.balance(&relay).await + bob.balance(&relay).await,
        total
    );

    // With every unit done, the demo generator queues the next job.
    let next = relay.queue_demo_job().await;
    assert_ne!(next.job_id, job.job_id);
    assert_ne!(next.seed, job.seed);
}

#[tokio::test]
async fn no_work_is_204_with_retry_after_and_the_generator_waits_for_open_units() {
    let relay = TestRelay::new();
    let alice = Contributor::new();
    assert!(alice.lease(&relay).await.is_none());

    relay.queue_demo_job().await;
    assert!(
        glowworm_relay::work::demo::tick(
            &relay.state.db,
            &relay.state.config,
            relay.state.now_ms()
        )
        .await
        .unwrap()
        .is_none(),
        "no second demo job while units are pending"
    );
    // Even with every unit leased (two contributors: a new key holds two leases at most), the
    // generator still waits.
    let bob = Contributor::new();
    for contributor in [&alice, &alice, &bob, &bob] {
        contributor.lease(&relay).await.unwrap();
    }
    assert!(Contributor::new().lease(&relay).await.is_none());
    assert!(
        glowworm_relay::work::demo::tick(
            &relay.state.db,
            &relay.state.config,
            relay.state.now_ms()
        )
        .await
        .unwrap()
        .is_none()
    );
}

#[tokio::test]
async fn a_released_lease_returns_its_unit_without_using_an_attempt() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let (alice, bob) = (Contributor::new(), Contributor::new());
    let lease = alice.lease(&relay).await.unwrap();

    // Only its holder may release it.
    let refused = bob.release(&relay, &lease, None).await;
    refused.assert_error(403, "wrong_contributor");

    let reply = alice.release(&relay, &lease, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    check_schema(&reply.json(), "ReleaseReceipt");
    assert_eq!(
        reply.json::<Value>(),
        serde_json::json!({ "released": true })
    );
    assert_eq!(
        relay
            .count("SELECT attempts FROM units WHERE state = 'pending' ORDER BY id LIMIT 1")
            .await,
        0,
        "the attempt was given back"
    );
    // Releasing again is harmless.
    let again = alice.release(&relay, &lease, None).await;
    assert_eq!(again.status, StatusCode::OK);

    // The unit goes to the next contributor; the released lease can no longer be submitted.
    let next = bob.lease(&relay).await.unwrap();
    assert_eq!(next.unit_id, lease.unit_id);
    let output = alice.compute(&relay, &lease).await;
    relay
        .post("/v1/results", &alice.submission(&lease, &output))
        .await
        .assert_error(410, "lease_expired");
    assert_eq!(alice.balance(&relay).await, 0);

    // Unknown leases are 404.
    alice
        .release_id(&relay, "0123", None)
        .await
        .assert_error(404, "unknown_lease");
}

#[tokio::test]
async fn two_racing_copies_of_a_result_are_credited_once() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let lease = alice.lease(&relay).await.unwrap();
    let output = alice.compute(&relay, &lease).await;
    let submission = alice.submission(&lease, &output);

    let (first, second) = tokio::join!(
        relay.post("/v1/results", &submission),
        relay.post("/v1/results", &submission)
    );
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let refused = if first.status == StatusCode::OK {
        second
    } else {
        first
    };
    refused.assert_error(409, "already_submitted");
    assert_eq!(alice.balance(&relay).await, lease.flop as i64);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        1
    );
}
