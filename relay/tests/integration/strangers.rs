//! Strangers with free keys cannot fail a job, hold every lease or leave rows behind: each attack
//! from the issue, tried against the relay's HTTP API with real signatures and a real SQLite
//! file, is refused or harmless, nothing is credited that should not be, and the job completes.

use crate::common::{Contributor, TestRelay, accepted, assert_documented};
use axum::http::StatusCode;
use glowworm_protocol::encoding::f32s_to_bytes;
use glowworm_protocol::kernels::custom::samples;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{Lease, MatmulShape, Stats};
use std::time::Duration;

/// 16 units of 64 x 64 (k = 64).
const SIXTEEN_UNITS: MatmulShape = MatmulShape {
    m: 256,
    n: 256,
    k: 64,
};

/// Random values of the output's size: a cheater's answer.
fn garbage(lease: &Lease, seed: u64) -> Vec<u8> {
    f32s_to_bytes(&matmul::sample_matrix(
        (lease.output_bytes / 4) as u32,
        seed,
    ))
}

/// Every unit of job `job_id` is computed by honest contributors (new keys on networks of their
/// own), and the job is done; returns the credits they earned.
async fn honest_finish(relay: &TestRelay, job_id: i64) -> i64 {
    let mut earned = 0;
    for i in 0.. {
        let job = relay.job(job_id).await;
        assert_ne!(job.state, "failed", "{:?}", job.failure);
        if job.units_verified == job.units_total {
            break;
        }
        assert!(i < 200, "the honest contributors make progress");
        let honest = Contributor::at(&format!("192.0.2.{}", 1 + i % 200));
        // Units strangers failed are held a while for keys with a record; these honest keys
        // are new, so they wait that out.
        let lease = match honest.lease(relay).await {
            Some(lease) => lease,
            None => {
                relay.pass_holds();
                honest
                    .lease(relay)
                    .await
                    .expect("an honest contributor gets work while units are open")
            }
        };
        let output = honest.compute(relay, &lease).await;
        earned += accepted(&honest.submit(relay, &lease, &output).await).credited;
    }
    relay.assembled(job_id).await;
    assert_eq!(relay.job(job_id).await.state, "done");
    earned
}

/// Credits of every account but the honest contributors' (192.0.2.x leases).
async fn credits_of_others(relay: &TestRelay) -> i64 {
    relay
        .count(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger
             WHERE kind IN ('unit_verified', 'partner_share') AND account NOT IN
                 (SELECT public_key FROM leases WHERE network = '192.0.2.0/24')",
        )
        .await
}

#[tokio::test]
async fn zero_outputs_from_fresh_keys_never_fail_a_requester_job() {
    let relay = TestRelay::new();
    let (job_id, _, _) = relay.queue_job(SIXTEEN_UNITS, None, 7).await;
    // Forty zero outputs (the five failed the job in 0.2 s), from two networks, with a
    // new key whenever one is quarantined.
    let mut sent = 0;
    let mut keys = 0;
    while sent < 40 {
        keys += 1;
        let cheat = Contributor::at(&format!("203.0.{}.9", 113 + keys % 2));
        loop {
            let Some(lease) = cheat.try_lease(&relay).await else {
                // Quarantined (a fresh key next), or every unit is held for keys with a
                // record after the strangers' misses: wait that out.
                relay.pass_holds();
                break;
            };
            let zeros = vec![0u8; lease.output_bytes as usize];
            cheat
                .submit(&relay, &lease, &zeros)
                .await
                .assert_error(422, "verification_failed");
            sent += 1;
        }
    }
    let job = relay.job(job_id).await;
    assert_eq!((job.state.as_str(), job.failure), ("queued", None));
    assert_eq!(relay.count("SELECT MAX(attempts) FROM units").await, 0);
    honest_finish(&relay, job_id).await;
    assert_eq!(credits_of_others(&relay).await, 0);
}

#[tokio::test]
async fn leasing_every_unit_and_letting_it_expire_over_and_over_never_fails_a_job() {
    let relay = TestRelay::new();
    let (job_id, _, _) = relay.queue_job(SIXTEEN_UNITS, None, 8).await;
    for round in 0..6 {
        // Units strangers let expire are held a while for keys with a record; these are new.
        relay.pass_holds();
        // Eight new keys on eight networks take two leases each: every unit.
        for i in 0..8 {
            let expirer = Contributor::at(&format!("198.51.{round}.{i}"));
            for _ in 0..2 {
                expirer.lease(&relay).await.expect("a unit is pending");
            }
        }
        assert!(Contributor::new().lease(&relay).await.is_none(), "all held");
        relay.advance(Duration::from_secs(61));
    }
    let job = relay.job(job_id).await;
    assert_eq!((job.state.as_str(), job.failure), ("queued", None));
    assert_eq!(relay.count("SELECT MAX(attempts) FROM units").await, 0);
    honest_finish(&relay, job_id).await;
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE state = 'expired'")
            .await,
        6 * 16
    );
    assert_eq!(credits_of_others(&relay).await, 0);
}

#[tokio::test]
async fn one_key_or_one_network_cannot_hold_every_lease() {
    let relay = TestRelay::with_config(|c| c.trust_after = 3);
    // 64 units.
    let shape = MatmulShape {
        m: 512,
        n: 512,
        k: 64,
    };
    let (job_id, _, _) = relay.queue_job(shape, None, 9).await;
    // A key with a record (three valid results in a row: trusted) on the network hoarders will
    // use.
    let neighbour = Contributor::at("198.51.100.251");
    for _ in 0..3 {
        neighbour.earn(&relay).await;
    }

    // A new key holds two leases; the third ask is 429 lease_cap, documented, with Retry-After.
    let hoarder = Contributor::at("198.51.100.1");
    for _ in 0..2 {
        hoarder.lease(&relay).await.unwrap();
    }
    let capped = hoarder.lease_reply(&relay).await;
    capped.assert_error(429, "lease_cap");
    assert_documented(&capped, "post", "/v1/leases");
    assert!(capped.headers.contains_key("retry-after"));

    // A thousand new keys on that network hold 16 leases together, however many ask.
    for i in 0..1000 {
        let reply = Contributor::at(&format!("198.51.100.{}", 2 + i % 250))
            .lease_reply(&relay)
            .await;
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.status
        );
    }
    let held = "SELECT COUNT(*) FROM leases WHERE state = 'active' AND network = '198.51.100.0/24'";
    assert_eq!(relay.count(held).await, 16);

    // Everyone else still gets work, and a key's allowance grows with its record: three valid
    // results in a row and it may hold five.
    let honest = Contributor::at("192.0.2.1");
    for _ in 0..3 {
        honest.earn(&relay).await;
    }
    for _ in 0..5 {
        honest
            .lease(&relay)
            .await
            .expect("work while units are open");
    }
    honest
        .lease_reply(&relay)
        .await
        .assert_error(429, "lease_cap");
    // The key with a record on the hoarders' network is not held back by them.
    neighbour
        .lease(&relay)
        .await
        .expect("a trusted key is not counted among the network's new keys");

    // Once their leases expire, the network's new keys get fewer: 16 failures in ten minutes
    // leave them one lease in flight.
    relay.advance(Duration::from_secs(61));
    let mut granted = 0;
    for i in 0..50 {
        let reply = Contributor::at(&format!("198.51.100.{}", 2 + i))
            .lease_reply(&relay)
            .await;
        if reply.status == StatusCode::OK {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
    // After ten quiet minutes the network is forgiven.
    relay.advance(Duration::from_secs(601));
    let fresh = Contributor::at("198.51.100.200");
    assert!(fresh.lease(&relay).await.is_some());
    assert_eq!(relay.job(job_id).await.state, "queued");
}

#[tokio::test]
async fn made_up_keys_leave_no_rows_and_are_not_counted_online() {
    let relay = TestRelay::new();
    let job = relay.queue_demo_job().await;
    for i in 0..1000 {
        let stranger = Contributor::at(&format!("203.0.113.{}", i % 250));
        if let Some(lease) = stranger.try_lease(&relay).await {
            stranger.release(&relay, &lease, None).await;
        }
    }
    assert_eq!(relay.count("SELECT COUNT(*) FROM contributors").await, 0);
    assert_eq!(relay.count("SELECT COUNT(*) FROM reputation").await, 0);
    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(stats.contributors_online, 0);
    // A stranger that was never credited is unknown.
    Contributor::new()
        .info_reply(&relay)
        .await
        .assert_error(404, "unknown_contributor");

    // A key gets its row when it first earns.
    let honest = Contributor::new();
    let receipt = honest.earn(&relay).await;
    assert_eq!(receipt.status, "verified");
    assert_eq!(relay.count("SELECT COUNT(*) FROM contributors").await, 1);
    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(stats.contributors_online, 1);
    assert_eq!(honest.info(&relay).await.units_verified, 1);
    let _ = job;
}

/// A requester's kernel job with two replicas: strangers' garbage, however much, neither fails
/// it nor keeps two honest replicas from deciding it. A kernel whose outputs proven
/// contributors cannot agree on is the job's own fault: it fails after `max_replicas` of them.
#[tokio::test]
async fn strangers_disagreeing_never_fail_a_kernel_job_but_proven_contributors_do() {
    const N: u32 = 64;
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trust_after = 1;
    });
    let proven = relay.proven_contributors(5).await;
    let x = matmul::sample_matrix(N, 1);
    let y = matmul::sample_matrix(N, 2);
    let inputs = vec![f32s_to_bytes(&x), f32s_to_bytes(&y)];
    let job_id = relay
        .queue_kernel_job(samples::saxpy_spec(N, 1), inputs.clone())
        .await;
    relay.pass_first_pick();
    for seed in 0..12 {
        let stranger = Contributor::new();
        let lease = stranger.lease(&relay).await.expect("the unit is open");
        let reply = stranger
            .submit(&relay, &lease, &garbage(&lease, seed))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "pending: nobody agrees yet");
    }
    let job = relay.job(job_id).await;
    assert_eq!((job.state.as_str(), job.failure), ("queued", None));
    let right = f32s_to_bytes(&samples::saxpy_reference(&x, &y));
    for _ in 0..2 {
        let honest = Contributor::new();
        let lease = honest.lease(&relay).await.expect("the unit is open");
        accepted(&honest.submit(&relay, &lease, &right).await);
    }
    relay.assembled(job_id).await;
    assert_eq!(relay.job(job_id).await.state, "done");
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM results WHERE state = 'valid'")
            .await,
        2 + relay
            .count("SELECT COUNT(*) FROM units WHERE kernel_unit IS NULL")
            .await,
        "the two honest replicas and the proven contributors' demo units"
    );

    // The same kernel, but every proven contributor gets another output (a kernel that is not
    // deterministic): after five of them the job fails, saying why.
    let job_id = relay
        .queue_kernel_job(samples::saxpy_spec(N, 1), inputs)
        .await;
    for (seed, contributor) in proven.iter().enumerate() {
        let lease = contributor.lease(&relay).await.expect("the unit is open");
        let reply = contributor
            .submit(&relay, &lease, &garbage(&lease, 100 + seed as u64))
            .await;
        assert!(reply.status.is_success() || reply.status.as_u16() == 422);
    }
    let job = relay.job(job_id).await;
    assert_eq!(job.state, "failed");
    let failure = job.failure.unwrap();
    assert!(
        failure.contains("5 of them from contributors with a verified record"),
        "{failure}"
    );
}

/// While keys with a record are at work (leased in the last minute), a new job's units go to
/// such keys first: a new key
/// gets them only once they are `FIRST_PICK_MS` old, so hoarders get what the proven
/// contributors left.
#[tokio::test]
async fn keys_with_a_record_get_the_first_pick_of_new_units() {
    let relay = TestRelay::with_config(|c| c.trust_after = 1);
    let proven = relay.proven_contributors(1).await.remove(0);
    // Nobody with a record at work in the last minute: a new job's units go to anyone at once.
    relay.advance(Duration::from_millis(
        glowworm_relay::work::units::FIRST_PICK_WINDOW_MS as u64 + 1,
    ));
    let (first, _, _) = relay.queue_job(SIXTEEN_UNITS, None, 11).await;
    let held = Contributor::new()
        .lease(&relay)
        .await
        .expect("anyone, at once");
    assert_eq!(held.job_id, first);
    honest_finish(&relay, first).await;

    // The proven key at work: the next job's units are its first, for two seconds.
    let (second, _, _) = relay.queue_job(SIXTEEN_UNITS, None, 12).await;
    let lease = proven.lease(&relay).await.expect("first pick");
    assert_eq!(lease.job_id, second);
    let stranger = Contributor::new();
    assert!(
        stranger.lease(&relay).await.is_none(),
        "not yet for a new key"
    );
    relay.advance(Duration::from_millis(
        glowworm_relay::work::units::FIRST_PICK_MS as u64,
    ));
    assert_eq!(
        stranger
            .lease(&relay)
            .await
            .expect("the job is old enough")
            .job_id,
        second
    );
}
