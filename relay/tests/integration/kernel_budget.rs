//! Kernel units that never finish: a requester's WGSL can loop for as long as a GPU lets it (a
//! browser's watchdog resets the device; a native worker may hang). Each unit has a GPU budget,
//! measured by the relay: the time from each lease to its result, or to a release that reports
//! the GPU failing, and the number of such failures. A unit over either fails its job, with a
//! reason the requester sees; a plain release (the person pressed Stop) is never charged. Only
//! proven keys' leases (trusted when issued) are charged: a stranger that holds a lease to its
//! deadline or says its GPU failed costs the job nothing. And a job's status says why its units
//! wait.

use crate::common;

use crate::common::{Contributor, TestRelay};
use axum::http::StatusCode;
use glowworm_protocol::encoding::f32s_to_bytes;
use glowworm_protocol::kernels::custom::samples;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{Lease, ReleaseReason};
use std::time::Duration;

const N: u32 = 64;

/// What the job's one unit computes.
fn saxpy_output() -> Vec<u8> {
    f32s_to_bytes(&samples::saxpy_reference(
        &matmul::sample_matrix(N, 1),
        &matmul::sample_matrix(N, 2),
    ))
}

/// A relay with `proven` contributors with a record ([`TestRelay::proven_contributors`]) and
/// then a one-unit SAXPY job (2 replicas); returns the relay, the job id and the contributors.
async fn relay_with_kernel_job(
    proven: usize,
    adjust: impl FnOnce(&mut glowworm_relay::Config),
) -> (TestRelay, i64, Vec<Contributor>) {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trust_after = 1;
        adjust(c);
    });
    let contributors = relay.proven_contributors(proven).await;
    let inputs = vec![
        f32s_to_bytes(&matmul::sample_matrix(N, 1)),
        f32s_to_bytes(&matmul::sample_matrix(N, 2)),
    ];
    let job_id = relay
        .queue_kernel_job(samples::saxpy_spec(N, 1), inputs)
        .await;
    relay.pass_first_pick();
    (relay, job_id, contributors)
}

/// `who` gives `lease` back for `reason`, signed; asserts it is released.
async fn release(
    relay: &TestRelay,
    who: &Contributor,
    lease: &Lease,
    reason: Option<ReleaseReason>,
) {
    let reply = who.release(relay, lease, reason).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[tokio::test]
async fn a_kernel_that_fails_the_gpu_of_three_contributors_fails_its_job_with_the_reason() {
    let (relay, job_id, proven) = relay_with_kernel_job(3, |_| {}).await;
    // Strangers saying their GPU failed, however many, are not charged.
    for _ in 0..5 {
        let stranger = Contributor::new();
        let lease = stranger.lease(&relay).await.unwrap();
        relay.advance(Duration::from_secs(50));
        release(&relay, &stranger, &lease, Some(ReleaseReason::GpuFailed)).await;
    }
    assert_eq!(
        relay
            .count("SELECT gpu_ms + gpu_failures FROM units WHERE kernel_unit IS NOT NULL")
            .await,
        0
    );
    for (i, contributor) in proven.iter().enumerate() {
        let lease = contributor
            .lease(&relay)
            .await
            .unwrap_or_else(|| panic!("the unit is offered again after {i} GPU failures"));
        relay.advance(Duration::from_secs(5));
        release(&relay, contributor, &lease, Some(ReleaseReason::GpuFailed)).await;
    }
    let job = relay.job(job_id).await;
    assert_eq!((job.state.as_str(), job.units_failed), ("failed", 1));
    let failure = job.failure.expect("a failed job says why");
    assert!(
        failure.contains("the GPU failed running the kernel for 3 contributors"),
        "{failure}"
    );
    assert!(Contributor::new().lease(&relay).await.is_none());
    assert_eq!(
        relay
            .count("SELECT gpu_ms FROM units WHERE kernel_unit IS NOT NULL")
            .await,
        15_000,
        "each lease's time until its release was charged"
    );
}

#[tokio::test]
async fn a_kernel_over_its_gpu_time_budget_fails_its_job() {
    let (relay, job_id, proven) = relay_with_kernel_job(2, |c| {
        c.unit_gpu_seconds = 100;
        c.max_gpu_failures = 10;
        c.lease_seconds = 600;
    })
    .await;
    // A stranger holding the unit to its deadline is not charged; a proven key's expired lease
    // is, for its whole time.
    let stranger = Contributor::new();
    stranger.lease(&relay).await.unwrap();
    relay.advance(Duration::from_secs(601));
    let lease = proven[0].lease(&relay).await.unwrap();
    assert_eq!(
        relay
            .count("SELECT gpu_ms FROM units WHERE kernel_unit IS NOT NULL")
            .await,
        0
    );
    relay.advance(Duration::from_secs(60));
    release(&relay, &proven[0], &lease, Some(ReleaseReason::GpuFailed)).await;
    assert_eq!(relay.job(job_id).await.state, "queued", "60 s of 100 used");

    let lease = proven[1].lease(&relay).await.unwrap();
    relay.advance(Duration::from_secs(50));
    release(&relay, &proven[1], &lease, Some(ReleaseReason::GpuFailed)).await;
    let job = relay.job(job_id).await;
    assert_eq!(job.state, "failed");
    let failure = job.failure.unwrap();
    assert!(
        failure.contains("110.0 s") && failure.contains("budget of 100 s"),
        "{failure}"
    );
}

#[tokio::test]
async fn stopping_is_never_charged_to_the_unit() {
    let (relay, job_id, proven) = relay_with_kernel_job(5, |c| {
        c.unit_gpu_seconds = 10;
        c.max_gpu_failures = 1;
    })
    .await;
    // Many people press Stop after a long while (or say nothing, as older pages do): the unit
    // keeps its budget and its attempts.
    for (reason, contributor) in [
        None,
        Some(ReleaseReason::Stopped),
        Some(ReleaseReason::FetchFailed),
        None,
        Some(ReleaseReason::Stopped),
    ]
    .into_iter()
    .zip(&proven)
    {
        let lease = contributor.lease(&relay).await.unwrap();
        relay.advance(Duration::from_secs(30));
        release(&relay, contributor, &lease, reason).await;
    }
    assert_eq!(relay.job(job_id).await.state, "queued");
    assert_eq!(
        relay
            .count("SELECT gpu_ms + gpu_failures + attempts FROM units")
            .await,
        0
    );
    // An unknown reason is a 400 naming the field, and changes nothing.
    let contributor = Contributor::new();
    let lease = contributor.lease(&relay).await.unwrap();
    let mut body =
        serde_json::to_value(contributor.release_request(&lease.lease_id, None)).unwrap();
    body["reason"] = "bored".into();
    let reply = relay
        .post(&format!("/v1/leases/{}/release", lease.lease_id), &body)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&reply.body).contains("reason"));
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE state = 'active'")
            .await,
        1,
        "the lease is still held"
    );
}

#[tokio::test]
async fn results_count_towards_the_budget_and_a_job_says_why_its_units_wait() {
    let (relay, job_id, proven) = relay_with_kernel_job(1, |c| c.distinct_networks = true).await;
    let waiting = relay.job(job_id).await.waiting;
    assert_eq!(
        waiting
            .iter()
            .map(|w| (w.reason.as_str(), w.units))
            .collect::<Vec<_>>(),
        [("queued", 1)]
    );

    let first = &proven[0]; // at 198.18.0.1
    let lease = first.lease(&relay).await.unwrap();
    let waiting = relay.job(job_id).await.waiting;
    assert_eq!(
        waiting
            .iter()
            .map(|w| (w.reason.as_str(), w.units))
            .collect::<Vec<_>>(),
        [("computing", 1)]
    );
    relay.advance(Duration::from_secs(2));
    common::accepted(&first.submit(&relay, &lease, &saxpy_output()).await);
    assert_eq!(
        relay
            .count("SELECT gpu_ms FROM units WHERE kernel_unit IS NOT NULL")
            .await,
        2_000,
        "a proven key's time to its result"
    );

    // One replica in; its neighbour on the same /24 may not supply the second.
    let neighbour = Contributor::at("198.18.0.6");
    assert!(neighbour.lease(&relay).await.is_none());
    let job = relay.job(job_id).await;
    let [replicas] = &job.waiting[..] else {
        panic!("one reason: {:?}", job.waiting)
    };
    assert_eq!((replicas.reason.as_str(), replicas.units), ("replicas", 1));
    assert!(
        replicas
            .detail
            .contains("networks (/24 or /64) other than those of its earlier replicas"),
        "{}",
        replicas.detail
    );

    let elsewhere = Contributor::at("203.0.113.20");
    let lease = elsewhere.lease(&relay).await.unwrap();
    common::accepted(&elsewhere.submit(&relay, &lease, &saxpy_output()).await);
    let job = relay.job(job_id).await;
    assert_eq!(job.state, "done");
    assert!(job.waiting.is_empty() && job.failure.is_none());
}
