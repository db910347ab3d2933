//! Leases end: late results are refused and their units reissued, wrong results are rejected
//! without credit, and a unit that keeps failing is failed for good, failing its job.

mod common;

use axum::http::StatusCode;
use common::{Contributor, TestRelay};
use glowworm::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm::wire::{JobStatus, Stats};
use std::time::Duration;

#[tokio::test]
async fn a_unit_not_returned_in_time_goes_to_another_contributor() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let (slow, quick) = (Contributor::new(), Contributor::new());

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

    // The unit goes to another contributor, on its second attempt.
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
        2
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
    assert_eq!(quick.balance(&relay).await, lease.flop as i64);
}

#[tokio::test]
async fn a_result_with_one_wrong_element_is_rejected_and_the_unit_reissued() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let (cheat, honest) = (Contributor::new(), Contributor::new());

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
    assert_eq!(relay.count("SELECT COUNT(*) FROM ledger").await, 0);
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
    assert_eq!(honest.balance(&relay).await, lease.flop as i64);
}

#[tokio::test]
async fn a_unit_that_uses_up_its_attempts_fails_and_fails_its_job() {
    // Two units, two attempts each.
    let relay = TestRelay::with_config(|c| {
        c.max_attempts = 2;
        c.demo_m = 64;
        c.demo_n = 128;
        c.demo_k = 64;
    });
    let job = relay.queue_demo_job().await;
    let contributor = Contributor::new();

    // Attempt 1: the lease expires.
    let first = contributor.lease(&relay).await.unwrap();
    relay.advance(Duration::from_secs(61));
    // Attempt 2: a wrong result is rejected, and that was the last attempt.
    let second = contributor.lease(&relay).await.unwrap();
    assert_eq!(second.unit_id, first.unit_id);
    let zeros = vec![0u8; second.output_bytes as usize];
    relay
        .post("/v1/results", &contributor.submission(&second, &zeros))
        .await
        .assert_error(422, "verification_failed");

    // The job has failed, so its other unit is not worth leasing any more.
    assert!(
        contributor.lease(&relay).await.is_none(),
        "nothing to lease"
    );
    let status: JobStatus = relay.get(&format!("/v1/jobs/{}", job.job_id)).await.json();
    assert_eq!(status.state, "failed");
    assert_eq!(
        (
            status.units_total,
            status.units_failed,
            status.units_pending
        ),
        (2, 1, 1)
    );
    assert_eq!(status.output_hash, None);
    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(
        (stats.units_failed, stats.units_pending, stats.jobs_done),
        (1, 0, 0)
    );
    assert_eq!(contributor.balance(&relay).await, 0);

    // The failed job no longer holds up the demo generator.
    let next = relay.queue_demo_job().await;
    assert_ne!(next.job_id, job.job_id);
}

#[tokio::test]
async fn expiry_alone_exhausts_attempts() {
    let relay = one_unit_with_two_attempts();
    let job = relay.queue_demo_job().await;
    let contributor = Contributor::new();
    two_expiries_fail_the_job(&relay, &contributor, job.job_id).await;
}

/// A relay that stops (crash or restart) while leases are active gives their units the attempt
/// back when it starts again: their contributors may never have received them, so restarts
/// alone must not fail a job. The attempt is given back once per lease, however often the relay
/// restarts, and a release afterwards does not give it back a second time.
#[tokio::test]
async fn leases_a_restart_interrupts_do_not_use_up_attempts() {
    let relay = one_unit_with_two_attempts();
    let job = relay.queue_demo_job().await;
    let contributor = Contributor::new();
    let attempts = || relay.count("SELECT attempts FROM units");
    let restart = || async {
        relay
            .state
            .db
            .call(|conn| glowworm_relay::leasing::mark_interrupted(conn))
            .await
            .unwrap()
    };

    // Two leases cut short by restarts: each gets its attempt back, once.
    for _ in 0..2 {
        contributor.lease(&relay).await.expect("an attempt is left");
        assert_eq!(attempts().await, 1);
        assert_eq!(restart().await, 1, "one lease was active");
        assert_eq!(restart().await, 0, "a second restart forgives nothing more");
        assert_eq!(attempts().await, 0);
        relay.advance(Duration::from_secs(61));
    }
    // A lease that outlived a restart and is then released is not refunded twice.
    let released = contributor.lease(&relay).await.unwrap();
    restart().await;
    assert_eq!(
        contributor.release(&relay, &released, None).await.status,
        StatusCode::OK
    );
    assert_eq!(attempts().await, 0);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE outlived_relay = 1")
            .await,
        3
    );

    // Without restarts, expiries count again: two more and the unit fails.
    two_expiries_fail_the_job(&relay, &contributor, job.job_id).await;
}

/// A relay whose demo jobs are a single 64x64x64 unit with two attempts.
fn one_unit_with_two_attempts() -> TestRelay {
    TestRelay::with_config(|c| {
        c.max_attempts = 2;
        c.demo_m = 64;
        c.demo_n = 64;
        c.demo_k = 64;
    })
}

/// `contributor` leases job `job_id`'s one unit and lets the lease expire, twice; then the unit
/// has used its two attempts: nothing is left to lease and the job has failed.
async fn two_expiries_fail_the_job(relay: &TestRelay, contributor: &Contributor, job_id: i64) {
    for _ in 0..2 {
        contributor.lease(relay).await.expect("an attempt is left");
        relay.advance(Duration::from_secs(61));
    }
    assert!(contributor.lease(relay).await.is_none());
    let status: JobStatus = relay.get(&format!("/v1/jobs/{job_id}")).await.json();
    assert_eq!((status.state.as_str(), status.units_failed), ("failed", 1));
}
