//! Verification without a cheap check: replicas from distinct contributors compared within a
//! float tolerance, majorities, canaries, reputation, quarantine and adaptive replication,
//! through the relay's HTTP API with real signatures and a real SQLite file.

use crate::common;

use crate::common::{Contributor, TestRelay, accepted};
use axum::http::StatusCode;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{AdapterClass, Lease, MatmulShape};
use std::time::Duration;

/// One 64 x 64 unit of k = 64.
const ONE_UNIT: MatmulShape = MatmulShape {
    m: 64,
    n: 64,
    k: 64,
};
const FLOP: i64 = 2 * 64 * 64 * 64;

/// The unit's product summed in f32, forwards or backwards: honest, but rounded differently
/// from the reference (f64) and from each other, as different GPUs round.
async fn honest_in_order(relay: &TestRelay, lease: &Lease, reverse: bool) -> Vec<u8> {
    let mut inputs = Vec::new();
    for blob in &lease.inputs {
        let reply = relay.get(&format!("/v1/blobs/{}", blob.hash)).await;
        inputs.push(bytes_to_f32s(&reply.body).unwrap());
    }
    let (a, b) = (&inputs[0], &inputs[1]);
    let (m, n, k) = (
        lease.work.shape().unwrap().m as usize,
        lease.work.shape().unwrap().n as usize,
        lease.work.shape().unwrap().k as usize,
    );
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0f32;
            for step in 0..k {
                let l = if reverse { k - 1 - step } else { step };
                sum += a[i * k + l] * b[l * n + j];
            }
            c[i * n + j] = sum;
        }
    }
    f32s_to_bytes(&c)
}

/// Random values of the output's size: a cheater's answer.
fn garbage(lease: &Lease, seed: u64) -> Vec<u8> {
    f32s_to_bytes(&matmul::sample_matrix(
        lease.work.shape().unwrap().m * lease.work.shape().unwrap().n,
        seed,
    ))
}

/// The job's assembled output equals the CPU reference within the replica tolerance.
async fn assert_job_output_correct(
    relay: &TestRelay,
    job_id: i64,
    a: &[f32],
    b: &[f32],
    shape: MatmulShape,
) {
    let status = relay.job(job_id).await;
    assert_eq!(status.state, "done", "{status:?}");
    let output = relay
        .get(&format!("/v1/blobs/{}", status.output_hash.unwrap()))
        .await;
    let expected = f32s_to_bytes(&matmul::reference(a, b, shape));
    glowworm_protocol::compare::agree(
        &expected,
        &output.body,
        &matmul::replica_tolerance(a, b, shape),
    )
    .expect("the job's output is the product");
}

#[tokio::test]
async fn two_agreeing_replicas_from_distinct_contributors_verify_the_unit_and_credit_both() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 1).await;
    let (first, second) = (Contributor::new(), Contributor::new());

    let lease = first.lease(&relay).await.expect("the unit");
    let output = honest_in_order(&relay, &lease, false).await;
    let pending = accepted(&first.submit(&relay, &lease, &output).await);
    assert_eq!(
        (
            pending.status.as_str(),
            pending.credited,
            pending.pending,
            pending.balance
        ),
        ("pending", 0, FLOP, 0),
        "a lone replica waits, uncredited"
    );
    assert!(
        first.lease(&relay).await.is_none(),
        "the same contributor never gets a second replica of a unit"
    );
    assert_eq!(relay.job(job_id).await.state, "queued");

    let lease2 = second.lease(&relay).await.expect("the second replica");
    assert_eq!(lease2.unit_id, lease.unit_id);
    let output2 = honest_in_order(&relay, &lease2, true).await;
    assert_ne!(output, output2, "the two honest results round differently");
    let verified = accepted(&second.submit(&relay, &lease2, &output2).await);
    assert_eq!(
        (
            verified.status.as_str(),
            verified.credited,
            verified.pending
        ),
        ("verified", FLOP, 0)
    );
    let info = first.info(&relay).await;
    assert_eq!((info.credits, info.pending_credits), (FLOP, 0));
    assert_eq!(info.reputation.results_valid, 1);
    assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind = 'unit_verified'")
            .await,
        2
    );
}

#[tokio::test]
async fn a_disagreement_goes_to_a_third_contributor_and_the_majority_wins() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 2).await;
    let (honest, cheat, tiebreak) = (Contributor::new(), Contributor::new(), Contributor::new());

    let lease = honest.lease(&relay).await.unwrap();
    let output = honest.compute(&relay, &lease).await;
    assert_eq!(
        accepted(&honest.submit(&relay, &lease, &output).await).status,
        "pending"
    );
    let bad = cheat.lease(&relay).await.unwrap();
    assert_eq!(
        accepted(&cheat.submit(&relay, &bad, &garbage(&bad, 9)).await).status,
        "pending"
    );
    assert_eq!(
        relay.job(job_id).await.units_pending,
        1,
        "a third replica is wanted"
    );

    let third = tiebreak.lease(&relay).await.expect("the tie-break replica");
    let output3 = honest_in_order(&relay, &third, true).await;
    assert_eq!(
        accepted(&tiebreak.submit(&relay, &third, &output3).await).status,
        "verified"
    );
    assert_eq!(honest.info(&relay).await.credits, FLOP);
    let cheater = cheat.info(&relay).await;
    assert_eq!((cheater.credits, cheater.pending_credits), (0, 0));
    assert_eq!(
        (
            cheater.reputation.results_invalid,
            cheater.reputation.strikes
        ),
        (1, 1)
    );
    assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
}

#[tokio::test]
async fn replicas_never_go_to_one_network_or_one_address() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    relay.queue_job(ONE_UNIT, Some(2), 3).await;
    let first = Contributor::at("203.0.113.5");
    let lease = first.lease(&relay).await.unwrap();
    let output = first.compute(&relay, &lease).await;
    accepted(&first.submit(&relay, &lease, &output).await);

    let neighbour = Contributor::at("203.0.113.77");
    assert_eq!(
        neighbour.lease_reply(&relay).await.status,
        StatusCode::NO_CONTENT
    );
    let v6 = Contributor::at("2001:db8:1:2::1");
    let v6_lease = v6.lease(&relay).await.expect("another network");
    // The same /64 cannot hold the third replica the relay would want after a disagreement.
    let garbage_reply = v6.submit(&relay, &v6_lease, &garbage(&v6_lease, 1)).await;
    assert_eq!(accepted(&garbage_reply).status, "pending");
    let same_64 = Contributor::at("2001:db8:1:2::99");
    assert_eq!(
        same_64.lease_reply(&relay).await.status,
        StatusCode::NO_CONTENT
    );

    // A key linked to the same address as the first contributor is kept apart too.
    let address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let sibling = Contributor::at("198.51.100.7");
    for key in [first.public_key(), sibling.public_key()] {
        let address = address.to_string();
        relay
            .state
            .db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO links VALUES (?1, ?2, 1, 0, 'm', 's', 's')",
                    [&key, &address],
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }
    // The first key's lease was taken before its link; leases record the address from now on.
    relay
        .state
        .db
        .call(move |conn| {
            conn.execute("UPDATE leases SET account = ?1", [address])?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        sibling.lease_reply(&relay).await.status,
        StatusCode::NO_CONTENT
    );
    let stranger = Contributor::at("192.0.2.1");
    assert!(stranger.lease(&relay).await.is_some());
}

#[tokio::test]
async fn repeated_invalid_results_quarantine_a_contributor_and_withhold_its_pending_credits() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.quarantine_strikes = 2;
    });
    // A replicated unit the cheater answers correctly (pending), then Freivalds units it fails.
    relay.queue_job(ONE_UNIT, Some(2), 4).await;
    relay
        .queue_job(
            MatmulShape {
                m: 128,
                n: 64,
                k: 64,
            },
            None,
            5,
        )
        .await;
    let cheat = Contributor::new();
    let replica = cheat.lease(&relay).await.unwrap();
    let output = cheat.compute(&relay, &replica).await;
    assert_eq!(
        accepted(&cheat.submit(&relay, &replica, &output).await).status,
        "pending"
    );
    assert_eq!(cheat.info(&relay).await.pending_credits, FLOP);

    for seed in 0..2 {
        let lease = cheat.lease(&relay).await.unwrap();
        cheat
            .submit(&relay, &lease, &garbage(&lease, seed))
            .await
            .assert_error(422, "verification_failed");
    }
    let info = cheat.info(&relay).await;
    assert!(info.reputation.quarantined, "{info:?}");
    assert_eq!((info.credits, info.pending_credits), (0, 0), "withheld");
    cheat
        .lease_reply(&relay)
        .await
        .assert_error(403, "quarantined");

    // Its withheld replica no longer counts: two honest contributors verify the unit.
    for _ in 0..2 {
        let honest = Contributor::new();
        let lease = honest.lease(&relay).await.unwrap();
        assert_eq!(lease.unit_id, replica.unit_id);
        let output = honest.compute(&relay, &lease).await;
        accepted(&honest.submit(&relay, &lease, &output).await);
    }
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM results WHERE state = 'withheld'")
            .await,
        1
    );
}

#[tokio::test]
async fn canaries_repeat_a_verified_unit_and_catch_a_wrong_answer() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 1000);
    let (job_id, _, _) = relay
        .queue_job(
            MatmulShape {
                m: 128,
                n: 64,
                k: 64,
            },
            Some(2),
            6,
        )
        .await;
    // Two contributors verify one unit (no canary exists before a unit is verified).
    let (c1, c2) = (Contributor::new(), Contributor::new());
    let l1 = c1.lease(&relay).await.unwrap();
    // Replicated units are picked at random among the oldest: c2 gives others back until it
    // holds l1's unit.
    let l2 = loop {
        let lease = c2.lease(&relay).await.unwrap();
        if lease.unit_id == l1.unit_id {
            break lease;
        }
        let released = c2.release(&relay, &lease, None).await;
        assert_eq!(released.status, StatusCode::OK);
    };
    let out = c1.compute(&relay, &l1).await;
    accepted(&c1.submit(&relay, &l1, &out).await);
    accepted(&c2.submit(&relay, &l2, &out).await);
    let before = relay.job(job_id).await;

    let honest = Contributor::new();
    let canary = honest.lease(&relay).await.unwrap();
    // A canary is a lease of the verified unit itself: nothing on the wire sets it apart from a
    // replica of a live unit (an id outside its job's range once did).
    assert_eq!(
        (
            canary.unit_id,
            canary.job_id,
            &canary.inputs,
            canary.work,
            &canary.kernel,
            canary.flop,
            canary.output_bytes,
            canary.deadline_unix_ms - relay.clock_now(),
        ),
        (
            l1.unit_id,
            l1.job_id,
            &l1.inputs,
            l1.work,
            &l1.kernel,
            l1.flop,
            l1.output_bytes,
            l1.deadline_unix_ms - relay.clock_now(),
        ),
        "the unit it repeats, field for field"
    );
    let answer = honest_in_order(&relay, &canary, true).await;
    let checked = accepted(&honest.submit(&relay, &canary, &answer).await);
    assert_eq!(
        (checked.status.as_str(), checked.credited),
        ("verified", FLOP)
    );

    let cheat = Contributor::new();
    let canary = cheat.lease(&relay).await.unwrap();
    assert_eq!(canary.inputs, l1.inputs);
    cheat
        .submit(&relay, &canary, &garbage(&canary, 3))
        .await
        .assert_error(422, "verification_failed");
    assert_eq!(cheat.info(&relay).await.reputation.strikes, 1);
    let after = relay.job(job_id).await;
    assert_eq!(
        (
            after.units_total,
            after.units_verified,
            after.state.as_str()
        ),
        (before.units_total, before.units_verified, "queued"),
        "canaries are not part of the job"
    );
    // Neither canary touched the unit: verified, and no attempt used (the cheat was no proven
    // key, and a canary's lease never charges its unit).
    assert_eq!(
        relay
            .count(&format!(
                "SELECT COUNT(*) FROM units WHERE id = {} AND state = 'verified' AND attempts = 0",
                l1.unit_id
            ))
            .await,
        1
    );
}

#[tokio::test]
async fn a_unit_settled_on_one_trusted_result_never_serves_as_a_canary() {
    // Canaries are drawn at every lease; none exists while no unit has independent answers.
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 1000;
        c.trust_after = 3;
        c.trusted_replication_permille = 0;
    });
    let trusted = Contributor::at("203.0.113.5");
    earn_trust(&relay, &trusted, 3, 30).await;
    // A job of two replicated units: the trusted key computes the first alone, and a later
    // check of its settles it on its word, while the job is still running.
    relay
        .queue_job(
            MatmulShape {
                m: 128,
                n: 64,
                k: 64,
            },
            Some(2),
            31,
        )
        .await;
    let lease = trusted.lease(&relay).await.unwrap();
    let output = trusted.compute(&relay, &lease).await;
    accepted(&trusted.submit(&relay, &lease, &output).await);
    // A neighbour on the trusted key's network holds the second unit, so the trusted key's
    // next lease is the Freivalds-checked unit: its check.
    relay.pass_first_pick();
    let neighbour = Contributor::at("203.0.113.6");
    let held = neighbour.lease(&relay).await.unwrap();
    assert_ne!(held.unit_id, lease.unit_id);
    relay.queue_job(ONE_UNIT, None, 32).await;
    trusted.earn(&relay).await;
    assert_eq!(
        relay
            .count(&format!(
                "SELECT COUNT(*) FROM units WHERE id = {} AND state = 'verified'",
                lease.unit_id
            ))
            .await,
        1,
        "settled by the trusted key's next check"
    );
    // A contributor elsewhere is given the live unit, not the settled one as a canary: it has a
    // single valid result, no independent answer.
    let fresh = Contributor::at("198.51.100.9");
    let next = fresh.lease(&relay).await.unwrap();
    assert_eq!(next.unit_id, held.unit_id);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM leases WHERE canary = 1")
            .await,
        0
    );
}

/// Makes `contributor` trusted: `n` Freivalds-checked units computed correctly.
async fn earn_trust(relay: &TestRelay, contributor: &Contributor, n: u32, seed: u64) {
    relay
        .queue_job(
            MatmulShape {
                m: 64 * n,
                n: 64,
                k: 64,
            },
            None,
            seed,
        )
        .await;
    for _ in 0..n {
        contributor.earn(relay).await;
    }
    assert!(contributor.info(relay).await.reputation.trusted);
}

#[tokio::test]
async fn a_trusted_result_stands_alone_until_the_contributors_next_check_settles_it() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trust_after = 3;
        c.trusted_replication_permille = 0;
    });
    let trusted = Contributor::new();
    earn_trust(&relay, &trusted, 3, 10).await;

    let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 11).await;
    let lease = trusted.lease(&relay).await.unwrap();
    let output = trusted.compute(&relay, &lease).await;
    let waiting = accepted(&trusted.submit(&relay, &lease, &output).await);
    assert_eq!(
        (waiting.status.as_str(), waiting.pending),
        ("pending", FLOP)
    );
    assert!(
        Contributor::new().lease(&relay).await.is_none(),
        "not replicated: nobody else gets it"
    );
    assert_eq!(
        relay.job(job_id).await.state,
        "queued",
        "not in the output yet"
    );

    // Its next checked result settles it.
    relay.queue_job(ONE_UNIT, None, 12).await;
    let settled = trusted.earn(&relay).await;
    assert_eq!(settled.pending, 0);
    assert_eq!(trusted.info(&relay).await.credits, 5 * FLOP);
    assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
}

/// Trust is a property of one lease: a unit a trusted key held alone and gave back (or let
/// expire) is replicated as usual for whoever takes it next, so a fresh key's answer to it is
/// never settled on its own word.
#[tokio::test]
async fn a_unit_given_back_by_a_trusted_key_is_replicated_for_the_next() {
    for expire in [false, true] {
        let relay = TestRelay::with_config(|c| {
            c.canary_permille = 0;
            c.trust_after = 3;
            c.trusted_replication_permille = 0;
        });
        let trusted = Contributor::new();
        earn_trust(&relay, &trusted, 3, 40).await;
        let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 41).await;
        let held = trusted.lease(&relay).await.unwrap();
        if expire {
            relay.advance(Duration::from_secs(relay.state.config.lease_seconds + 1));
        } else {
            let released = trusted.release(&relay, &held, None).await;
            assert_eq!(released.status, StatusCode::OK);
        }

        // A fresh key takes it and answers zeros, then passes a check of its own.
        relay.pass_first_pick();
        let fresh = Contributor::new();
        let lease = fresh
            .lease(&relay)
            .await
            .expect("the unit is pending again");
        assert_eq!(lease.unit_id, held.unit_id);
        let zeros = vec![0u8; lease.output_bytes as usize];
        assert_eq!(
            accepted(&fresh.submit(&relay, &lease, &zeros).await).status,
            "pending"
        );
        relay.queue_job(ONE_UNIT, None, 42).await;
        relay.pass_first_pick();
        fresh.earn(&relay).await;
        assert_eq!(
            relay
                .count(&format!(
                    "SELECT COUNT(*) FROM units WHERE id = {} AND state = 'verified'",
                    held.unit_id
                ))
                .await,
            0,
            "expire: {expire}: the zeros are not settled by the fresh key's own check"
        );

        // Two honest replicas outvote the zeros.
        for _ in 0..2 {
            let honest = Contributor::new();
            let replica = honest.lease(&relay).await.expect("more replicas wanted");
            honest.complete(&relay, &replica).await;
        }
        assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
        assert_eq!(fresh.info(&relay).await.reputation.results_invalid, 1);
    }
}

#[tokio::test]
async fn a_trusted_contributor_caught_cheating_has_its_unchecked_results_replicated() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trust_after = 3;
        c.trusted_replication_permille = 0;
    });
    let turncoat = Contributor::new();
    earn_trust(&relay, &turncoat, 3, 20).await;

    let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 21).await;
    let lease = turncoat.lease(&relay).await.unwrap();
    assert_eq!(
        accepted(&turncoat.submit(&relay, &lease, &garbage(&lease, 1)).await).status,
        "pending",
        "accepted on trust, for now"
    );
    relay.queue_job(ONE_UNIT, None, 22).await;
    let check = turncoat.lease(&relay).await.unwrap();
    turncoat
        .submit(&relay, &check, &garbage(&check, 2))
        .await
        .assert_error(422, "verification_failed");
    assert!(!turncoat.info(&relay).await.reputation.trusted);

    // The unit it was trusted with is replicated after all; the honest majority wins.
    relay.pass_first_pick();
    for _ in 0..2 {
        let honest = Contributor::new();
        let replica = honest.lease(&relay).await.expect("replicated after all");
        let output = honest.compute(&relay, &replica).await;
        accepted(&honest.submit(&relay, &replica, &output).await);
    }
    assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
    let info = turncoat.info(&relay).await;
    assert_eq!(
        (
            info.credits,
            info.pending_credits,
            info.reputation.results_invalid
        ),
        (3 * FLOP, 0, 2)
    );
}

#[tokio::test]
async fn a_trusted_result_left_unsettled_too_long_is_replicated() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trust_after = 3;
        c.trusted_replication_permille = 0;
        c.settle_seconds = 60;
    });
    let trusted = Contributor::new();
    earn_trust(&relay, &trusted, 3, 30).await;
    let (job_id, a, b) = relay.queue_job(ONE_UNIT, Some(2), 31).await;
    let lease = trusted.lease(&relay).await.unwrap();
    let output = trusted.compute(&relay, &lease).await;
    accepted(&trusted.submit(&relay, &lease, &output).await);

    let other = Contributor::new();
    assert!(other.lease(&relay).await.is_none());
    relay.advance(Duration::from_secs(61));
    let replica = other
        .lease(&relay)
        .await
        .expect("replicated once the wait is over");
    let output2 = honest_in_order(&relay, &replica, false).await;
    assert_eq!(
        accepted(&other.submit(&relay, &replica, &output2).await).status,
        "verified"
    );
    assert_eq!(trusted.info(&relay).await.pending_credits, 0);
    assert_job_output_correct(&relay, job_id, &a, &b, ONE_UNIT).await;
}

/// Makes the units of `job_id` name a kernel that is not in the catalogue, as units made by an
/// older relay whose tiled kernel has since been retuned do.
async fn retire_kernel_of(relay: &TestRelay, job_id: i64) {
    relay
        .state
        .db
        .call(move |conn| {
            conn.execute(
                "UPDATE units SET kernel_hash = ?2 WHERE job_id = ?1",
                rusqlite::params![job_id, "ab".repeat(32)],
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_unit_whose_kernel_was_retired_runs_with_the_current_kernel() {
    let relay = TestRelay::new();
    let (old_job, a, b) = relay.queue_job(ONE_UNIT, None, 40).await;
    retire_kernel_of(&relay, old_job).await;
    relay.queue_job(ONE_UNIT, None, 41).await;
    let contributor = Contributor::new();
    let lease = contributor.lease(&relay).await.expect("the older unit");
    assert_eq!(lease.job_id, old_job);
    assert_eq!(lease.kernel.hash, matmul::TILED.hash());
    let output = honest_in_order(&relay, &lease, false).await;
    let receipt = accepted(&contributor.submit(&relay, &lease, &output).await);
    assert_eq!(receipt.status, "verified");
    assert_job_output_correct(&relay, old_job, &a, &b, ONE_UNIT).await;
}

#[tokio::test]
async fn a_replicated_unit_whose_kernel_was_retired_mid_replica_fails_instead_of_blocking_the_queue()
 {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    let (old_job, _, _) = relay.queue_job(ONE_UNIT, Some(2), 42).await;
    let first = Contributor::new();
    let lease = first.lease(&relay).await.expect("the first replica");
    assert_eq!(lease.job_id, old_job);
    retire_kernel_of(&relay, old_job).await;
    let (new_job, _, _) = relay.queue_job(ONE_UNIT, None, 43).await;
    let second = Contributor::new();
    let lease = second.lease(&relay).await.expect("the runnable unit");
    assert_eq!(lease.job_id, new_job);
    assert_eq!(relay.job(old_job).await.state, "failed");
}

#[tokio::test]
async fn adapters_are_named_freely_but_not_with_control_characters() {
    let relay = TestRelay::new();
    relay.queue_job(ONE_UNIT, None, 50).await;
    let contributor = Contributor::new();
    let ask = |vendor: &str| {
        let adapter = adapter(vendor, "llvmpipe (LLVM 15.0.6, 256 bits)");
        contributor.lease_reply_with(&relay, Some(adapter), None, None)
    };
    ask("bad\nvendor").await.assert_error(400, "bad_adapter");
    assert_eq!(ask("Mesa/X.org").await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_homogeneous_redundancy_replicas_are_compared_only_between_adapters_of_one_kind() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.homogeneous_redundancy = true;
    });
    relay.queue_job(ONE_UNIT, Some(2), 60).await;
    let ask = |who: &Contributor, vendor: &str, architecture: &str| {
        who.lease_request_with(&relay, Some(adapter(vendor, architecture)), None, None)
    };
    let first = Contributor::new();
    let reply = relay
        .post("/v1/leases", &ask(&first, "NVIDIA", "hopper"))
        .await;
    let lease: Lease = leased(&reply);
    let output = first.compute(&relay, &lease).await;
    accepted(&first.submit(&relay, &lease, &output).await);

    let other_kind = Contributor::new();
    let reply = relay
        .post("/v1/leases", &ask(&other_kind, "amd", "rdna-3"))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::NO_CONTENT,
        "another kind of adapter"
    );
    let same_kind = Contributor::new();
    let reply = relay
        .post("/v1/leases", &ask(&same_kind, "nvidia", "Hopper"))
        .await;
    let second: Lease = leased(&reply);
    assert_eq!(second.unit_id, lease.unit_id);
}

fn adapter(vendor: &str, architecture: &str) -> AdapterClass {
    AdapterClass {
        vendor: vendor.into(),
        architecture: architecture.into(),
    }
}

fn leased(reply: &common::Reply) -> Lease {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}
