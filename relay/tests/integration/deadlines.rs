//! Leases end: late results are refused and their units reissued, wrong results are rejected
//! without credit, and a unit whose proven contributors keep failing it is failed for good,
//! failing its job. Expiries, restarts and strangers' wrong results never fail a job.

use crate::common::{Contributor, TestRelay};
use axum::http::StatusCode;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::wire::{JobStatus, Stats};
use std::time::Duration;

#[tokio::test]
async fn a_unit_not_returned_in_time_goes_to_another_contributor() {
    let relay = TestRelay::with_config(|c| c.trust_after = 1);
    let quick = relay.proven_contributors(1).await.remove(0);
    let quick_before = quick.balance(&relay).await;
    relay.queue_demo_job().await;
    relay.pass_first_pick();
    let slow = Contributor::new();

    let lease = slow.lease(&relay).await.unwrap();
    let output = slow.compute(&relay, &lease).await;

    // Exactly at the deadline the lease still holds.
    relay.advance(Duration::from_secs(60));
    let next = quick.lease(&relay).await.unwrap();
    assert_ne!(next.unit_id, lease.unit_id, "not expired yet");
    assert_eq!(
        quick.release(&relay, &next, None).await.status,
        StatusCode::OK
    );

    // One millisecond later it has passed: the late result is refused.
    relay.advance(Duration::from_millis(1));
    relay
        .post("/v1/results", &slow.submission(&lease, &output))
        .await
        .assert_error(410, "lease_expired");

    // The unit goes to another contributor; the expiry used none of its attempts. A stranger
    // let it expire, so for a lease period only a key with a record may take it.
    let newcomer = Contributor::new().lease(&relay).await.unwrap();
    assert_ne!(
        newcomer.unit_id, lease.unit_id,
        "held for keys with a record"
    );
    let reissued = quick.lease(&relay).await.unwrap();
    assert_eq!(reissued.unit_id, lease.unit_id);
    assert_ne!(reissued.lease_id, lease.lease_id);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE state = 'expired'")
            .await,
        1
    );
    assert_eq!(
        relay
            .count("SELECT attempts FROM units WHERE state = 'leased' ORDER BY id LIMIT 1")
            .await,
        0
    );
    // The old lease stays refused, now that it is marked expired.
    relay
        .post("/v1/results", &slow.submission(&lease, &output))
        .await
        .assert_error(410, "lease_expired");

    let reply = relay
        .post("/v1/results", &quick.submission(&reissued, &output))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(slow.balance(&relay).await, 0);
    assert_eq!(
        quick.balance(&relay).await - quick_before,
        lease.flop as i64
    );
}

#[tokio::test]
async fn a_result_with_one_wrong_element_is_rejected_and_the_unit_reissued() {
    let relay = TestRelay::with_config(|c| c.trust_after = 1);
    let honest = relay.proven_contributors(1).await.remove(0);
    let ledger_before = relay
        .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
        .await;
    relay.queue_demo_job().await;
    relay.pass_first_pick();
    let cheat = Contributor::new();

    let lease = cheat.lease(&relay).await.unwrap();
    let output = cheat.compute(&relay, &lease).await;
    let mut c = bytes_to_f32s(&output).unwrap();
    c[1000] += 0.25;
    let wrong = f32s_to_bytes(&c);

    let reply = relay
        .post("/v1/results", &cheat.submission(&lease, &wrong))
        .await;
    reply.assert_error(422, "verification_failed");
    assert_eq!(cheat.balance(&relay).await, 0);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        ledger_before
    );
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM results WHERE verified = 0")
            .await,
        1,
        "the rejection is on record"
    );
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE state = 'rejected'")
            .await,
        1
    );
    // The rejected lease is closed, even for the right answer now.
    relay
        .post("/v1/results", &cheat.submission(&lease, &output))
        .await
        .assert_error(410, "lease_expired");

    // The unit is reissued, and the honest result is credited.
    let reissued = honest.lease(&relay).await.unwrap();
    assert_eq!(reissued.unit_id, lease.unit_id);
    let reply = relay
        .post("/v1/results", &honest.submission(&reissued, &output))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        ledger_before + 1
    );
}

/// Only a result of a proven key (trusted when it leased the unit) that fails verification
/// uses one of the unit's attempts: a stranger's wrong result and any expiry count against the
/// key alone. Here a proven key is one with a valid result (`trust_after` = 1).
#[tokio::test]
async fn a_unit_that_proven_contributors_keep_failing_fails_and_fails_its_job() {
    // Six units, two attempts each.
    let relay = TestRelay::with_config(|c| {
        c.max_attempts = 2;
        c.trust_after = 1;
        c.demo_m = 128;
        c.demo_n = 192;
        c.demo_k = 64;
    });
    let job = relay.queue_demo_job().await;
    let (alice, bob, carol) = (Contributor::new(), Contributor::new(), Contributor::new());
    for proven in [&alice, &bob, &carol] {
        proven.earn(&relay).await;
    }
    let attempts = || relay.count("SELECT MAX(attempts) FROM units");

    // Strangers' zeros and a proven key's expired lease: no attempt used. (A unit a stranger
    // failed is held a while for keys with a record; the next stranger waits that out.)
    for _ in 0..5 {
        relay.pass_holds();
        let stranger = Contributor::new();
        let lease = stranger.lease(&relay).await.unwrap();
        let zeros = vec![0u8; lease.output_bytes as usize];
        relay
            .post("/v1/results", &stranger.submission(&lease, &zeros))
            .await
            .assert_error(422, "verification_failed");
    }
    let expired = alice.lease(&relay).await.unwrap();
    relay.advance(Duration::from_secs(61));

    // Attempt 1: bob's wrong result. Attempt 2: carol's, and that was the last.
    for cheat in [&bob, &carol] {
        let lease = cheat.lease(&relay).await.unwrap();
        assert_eq!(lease.unit_id, expired.unit_id);
        assert_eq!(
            alice.info(&relay).await.reputation.consecutive_valid,
            0,
            "the expiry (swept by this lease) ended alice's run, and used no attempt"
        );
        let zeros = vec![0u8; lease.output_bytes as usize];
        relay
            .post("/v1/results", &cheat.submission(&lease, &zeros))
            .await
            .assert_error(422, "verification_failed");
    }
    assert_eq!(attempts().await, 2);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE state = 'rejected' AND proven = 0")
            .await,
        5,
        "the strangers' rejected leases were not proven"
    );

    // The job has failed, so its other units are not worth leasing any more.
    assert!(
        Contributor::new().lease(&relay).await.is_none(),
        "nothing to lease"
    );
    let status: JobStatus = relay.get(&format!("/v1/jobs/{}", job.job_id)).await.json();
    assert_eq!(status.state, "failed");
    assert!(
        status
            .failure
            .as_deref()
            .is_some_and(|why| why.contains("verified record")),
        "{:?}",
        status.failure
    );
    assert_eq!(
        (
            status.units_total,
            status.units_failed,
            status.units_verified
        ),
        (6, 1, 3)
    );
    assert_eq!(status.output_hash, None);
    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!((stats.units_failed, stats.units_pending), (1, 0));

    // The failed job no longer holds up the demo generator.
    let next = relay.queue_demo_job().await;
    assert_ne!(next.job_id, job.job_id);
}

/// Leasing a unit and letting the lease expire, over and over, from fresh keys and across
/// relay restarts, never fails its job: an expiry is the key's fault, never the unit's. The
/// relay marks leases a restart interrupted (their contributors may never have received them).
#[tokio::test]
async fn expiries_and_restarts_never_use_up_attempts() {
    let relay = TestRelay::with_config(|c| {
        c.max_attempts = 2;
        c.demo_m = 64;
        c.demo_n = 64;
        c.demo_k = 64;
    });
    let job = relay.queue_demo_job().await;
    let restart = || async {
        relay
            .state
            .db
            .call(|conn| glowworm_relay::work::leasing::mark_interrupted(conn))
            .await
            .unwrap()
    };
    for round in 0..6 {
        relay.pass_holds();
        let expirer = Contributor::new();
        expirer
            .lease(&relay)
            .await
            .expect("the unit is still pending");
        if round % 2 == 0 {
            assert_eq!(restart().await, 1, "one lease was active");
            assert_eq!(restart().await, 0, "marked once");
        }
        relay.advance(Duration::from_secs(61));
    }
    assert_eq!(relay.count("SELECT attempts FROM units").await, 0);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE outlived_relay = 1")
            .await,
        3
    );
    // A lease released after a restart is simply given back (a release holds nothing).
    relay.pass_holds();
    let released = Contributor::new();
    let lease = released.lease(&relay).await.unwrap();
    restart().await;
    assert_eq!(
        released.release(&relay, &lease, None).await.status,
        StatusCode::OK
    );
    // Someone finally computes it, and the job is done.
    Contributor::new().earn(&relay).await;
    relay.assembled(job.job_id).await;
    let status: JobStatus = relay.get(&format!("/v1/jobs/{}", job.job_id)).await.json();
    assert_eq!(status.state, "done");
}
