//! Money that balances: a requester's budget pays for its jobs (reserved when a job is accepted,
//! paid to contributors, partners and the operator as results are verified, the rest returned
//! when it ends), and the books are checked after every step: every entry sums to zero, no
//! account but a source is below zero, the balances agree with the ledger.

use crate::common::{Contributor, TestRelay};
use crate::requesters::{job_part, multipart_body, npy_matrix, part, submit};
use axum::http::StatusCode;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{Budget, JobStatus, MatmulShape};
use glowworm_relay::accounts::ledger;
use serde_json::json;

/// A (m x k) @ (k x n) upload of seeded matrices.
fn matmul_upload(m: u32, k: u32, n: u32) -> Vec<u8> {
    let a = matmul::sample_matrix(m * k, 1);
    let b = matmul::sample_matrix(k * n, 2);
    multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(m as usize, k as usize, &a)),
        part("b", npy_matrix(k as usize, n as usize, &b)),
    ])
}

/// What the relay says of `key`'s budget.
pub(crate) async fn budget(relay: &TestRelay, key: &str) -> Budget {
    let reply = crate::requesters::send(
        relay,
        axum::http::Method::GET,
        "/v1/budget",
        Some(key),
        "application/json",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    crate::common::check_schema(&reply.json(), "Budget");
    reply.json()
}

async fn balance_of(relay: &TestRelay, account: &'static str) -> i64 {
    relay
        .state
        .db
        .read(move |conn| ledger::balance(conn, account))
        .await
        .unwrap()
}

/// Job `id`'s status, as its requester `key` reads it (once its output is assembled).
async fn job_of(relay: &TestRelay, key: &str, id: i64) -> JobStatus {
    relay.assembled(id).await;
    let reply = crate::requesters::send(
        relay,
        axum::http::Method::GET,
        &format!("/v1/jobs/{id}"),
        Some(key),
        "application/json",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// FLOP of a (m x k) @ (k x n) product: what it costs at the default price (one credit per FLOP).
fn flop(m: i64, k: i64, n: i64) -> i64 {
    2 * m * k * n
}

#[tokio::test]
async fn a_job_reserves_its_price_pays_each_verified_result_and_the_books_balance_at_every_step() {
    let relay = TestRelay::with_config(|c| c.operator_fee_bps = 250);
    let granted = 10 * flop(100, 70, 90);
    let key = relay.create_api_key_with_budget("lab", 1000, granted).await;
    relay.assert_books_balance().await;
    let before = budget(&relay, &key).await;
    assert_eq!((before.available, before.reserved), (granted, 0));
    assert_eq!(
        (before.price_per_gflop, before.operator_fee_bps),
        (1_000_000_000, 250)
    );

    let reply = submit(&relay, Some(&key), matmul_upload(100, 70, 90)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let job: JobStatus = reply.json();
    let price = flop(100, 70, 90);
    assert_eq!(
        job.credits_reserved, price,
        "a matmul reserves its FLOP at one credit each, once per tile"
    );
    assert_eq!((job.credits_paid, job.credits_returned), (0, 0));
    let reserved = budget(&relay, &key).await;
    assert_eq!(
        (reserved.available, reserved.reserved),
        (granted - price, price)
    );
    relay.assert_books_balance().await;

    // Each verified tile pays its price: the contributor the rest after the operator's 2.5%.
    let alice = Contributor::new();
    let mut earned = 0;
    let mut fees = 0;
    while let Some(lease) = alice.lease(&relay).await {
        let receipt = alice.complete(&relay, &lease).await;
        let fee = lease.flop as i64 * 250 / 10_000;
        assert_eq!(receipt.status, "verified");
        assert_eq!(receipt.credited, lease.flop as i64 - fee);
        earned += receipt.credited;
        fees += fee;
        relay.assert_books_balance().await;
    }
    relay.all_assembled().await;
    let done = job_of(&relay, &key, job.id).await;
    assert_eq!(done.state, "done");
    assert_eq!(
        (done.credits_paid, done.credits_returned),
        (price, 0),
        "every tile was paid once: nothing is left to return"
    );
    assert_eq!(alice.balance(&relay).await, earned);
    assert_eq!(balance_of(&relay, ledger::OPERATOR).await, fees);
    assert_eq!(earned + fees, price, "what the requester paid, and no more");
    let after = budget(&relay, &key).await;
    assert_eq!((after.available, after.reserved), (granted - price, 0));
    relay.assert_books_balance().await;
}

#[tokio::test]
async fn a_budget_that_cannot_cover_a_job_is_refused_with_402_and_nothing_is_stored() {
    let relay = TestRelay::new();
    let short = flop(100, 70, 90) - 1;
    let key = relay.create_api_key_with_budget("lab", 1000, short).await;
    let jobs_before = relay.count("SELECT COUNT(*) FROM jobs").await;
    let legs_before = relay
        .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
        .await;

    let reply = submit(&relay, Some(&key), matmul_upload(100, 70, 90)).await;
    reply.assert_error(402, "insufficient_budget");
    assert!(
        reply.text().contains(&short.to_string()),
        "the error names the budget: {}",
        reply.text()
    );
    assert_eq!(relay.count("SELECT COUNT(*) FROM jobs").await, jobs_before);
    assert_eq!(relay.count("SELECT COUNT(*) FROM units").await, 0);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        legs_before
    );
    assert_eq!(budget(&relay, &key).await.available, short);

    // A requester with no grant at all is refused the same way.
    let broke = relay.create_api_key_with_budget("broke", 1000, 0).await;
    submit(&relay, Some(&broke), matmul_upload(8, 8, 8))
        .await
        .assert_error(402, "insufficient_budget");
    relay.assert_books_balance().await;

    // A job the budget covers exactly is accepted and leaves nothing.
    let exact = submit(&relay, Some(&key), matmul_upload(100, 70, 89)).await;
    assert_eq!(exact.status, StatusCode::CREATED, "{}", exact.text());
    assert_eq!(
        budget(&relay, &key).await.available,
        short - flop(100, 70, 89)
    );
    relay.assert_books_balance().await;
}

#[tokio::test]
async fn cancelling_a_job_returns_what_it_did_not_pay() {
    let relay = TestRelay::new();
    let key = relay.create_api_key("lab", 1000).await;
    let granted = budget(&relay, &key).await.available;
    // 128 x 128 with 64 x 64 tiles: four units.
    let job: JobStatus = submit(&relay, Some(&key), matmul_upload(128, 32, 128))
        .await
        .json();
    assert_eq!(job.units_total, 4);
    let alice = Contributor::new();
    let lease = alice.lease(&relay).await.unwrap();
    let paid = alice.complete(&relay, &lease).await.credited;
    assert_eq!(paid, lease.flop as i64);

    let reply = crate::requesters::send(
        &relay,
        axum::http::Method::DELETE,
        &format!("/v1/jobs/{}", job.id),
        Some(&key),
        "application/json",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let cancelled = job_of(&relay, &key, job.id).await;
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!(
        (cancelled.credits_paid, cancelled.credits_returned),
        (paid, job.credits_reserved - paid)
    );
    assert_eq!(budget(&relay, &key).await.available, granted - paid);
    relay.assert_books_balance().await;
}

#[tokio::test]
async fn a_demo_job_the_demo_budget_cannot_cover_is_computed_and_verified_but_unpaid() {
    let relay = TestRelay::new();
    // The test relay granted the demo budget; give it back, as if none had been granted.
    relay
        .state
        .db
        .call(|conn| {
            let left = ledger::balance(conn, ledger::DEMO_BUDGET)?;
            let leg = |account: &str, amount: i64| ledger::Leg {
                account: account.into(),
                amount,
                kind: "test_return",
                ..Default::default()
            };
            ledger::post(
                conn,
                "test_return",
                None,
                &[leg(ledger::DEMO_BUDGET, -left), leg(ledger::GRANTS, left)],
                0,
            )
        })
        .await
        .unwrap();
    let demo = relay.queue_demo_job().await;
    let alice = Contributor::new();
    let lease = alice.lease(&relay).await.unwrap();
    let receipt = alice.complete(&relay, &lease).await;
    assert_eq!(
        (receipt.status.as_str(), receipt.credited),
        ("verified", 0),
        "verified, and nobody pays for it"
    );
    assert_eq!(relay.job_now(demo.job_id).await.credits_reserved, 0);
    assert_eq!(alice.balance(&relay).await, 0);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind = 'unit_verified'")
            .await,
        0
    );
    relay.assert_books_balance().await;
}

#[tokio::test]
async fn a_replicated_job_reserves_every_replica_it_may_pay_and_returns_the_rest() {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.trusted_replication_permille = 1000;
    });
    let shape = MatmulShape {
        m: 64,
        n: 64,
        k: 16,
    };
    let (job_id, _, _) = relay.queue_job(shape, Some(2), 1).await;
    let price = flop(64, 16, 64);
    let max_replicas = relay.state.config.max_replicas as i64;
    let queued = relay.job_now(job_id).await;
    assert_eq!(queued.credits_reserved, price * max_replicas);
    relay.assert_books_balance().await;

    let (first, second) = (Contributor::new(), Contributor::new());
    let lease = first.lease(&relay).await.unwrap();
    let one = first.complete(&relay, &lease).await;
    assert_eq!((one.status.as_str(), one.credited), ("pending", 0));
    relay.assert_books_balance().await;
    let lease = second.lease(&relay).await.unwrap();
    let two = second.complete(&relay, &lease).await;
    assert_eq!((two.status.as_str(), two.credited), ("verified", price));
    assert_eq!(first.balance(&relay).await, price, "both replicas are paid");

    let done = relay.job(job_id).await;
    assert_eq!(done.state, "done");
    assert_eq!(
        (done.credits_paid, done.credits_returned),
        (2 * price, price * (max_replicas - 2))
    );
    assert_eq!(
        balance_of(&relay, ledger::DEMO_BUDGET).await,
        crate::common::TEST_BUDGET - 2 * price
    );
    relay.assert_books_balance().await;
}

#[tokio::test]
async fn a_kernel_job_pays_the_price_its_requester_offers() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    let key = relay.create_api_key("lab", 1000).await;
    let mut spec = glowworm_protocol::kernels::custom::samples::saxpy_spec(64, 1);
    spec.price_per_unit = Some(12_345);
    let x = glowworm_protocol::encoding::f32s_to_bytes(&matmul::sample_matrix(64, 1));
    let y = glowworm_protocol::encoding::f32s_to_bytes(&matmul::sample_matrix(64, 2));
    let body = multipart_body(&[
        job_part({
            let mut job = serde_json::to_value(&spec).unwrap();
            job["kind"] = "kernel".into();
            job
        }),
        part("x", x),
        part("y", y),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let job: JobStatus = reply.json();
    let max_replicas = relay.state.config.max_replicas as i64;
    assert_eq!(job.credits_reserved, 12_345 * max_replicas);

    // Distinct contributors (replicas never go to one network) until every unit is verified;
    // the job has one unit, so each lease is of it.
    let output = glowworm_protocol::encoding::f32s_to_bytes(
        &glowworm_protocol::kernels::custom::samples::saxpy_reference(
            &matmul::sample_matrix(64, 1),
            &matmul::sample_matrix(64, 2),
        ),
    );
    for seed in 0..6u8 {
        let contributor = Contributor::at(&format!("10.0.{seed}.1"));
        while let Some(lease) = contributor.lease(&relay).await {
            let reply = contributor.submit(&relay, &lease, &output).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    }
    relay.all_assembled().await;
    let done = job_of(&relay, &key, job.id).await;
    assert_eq!(done.state, "done", "{done:?}");
    assert_eq!(done.credits_paid % 12_345, 0, "each result paid the offer");
    assert!(done.credits_paid >= 12_345);
    assert_eq!(
        done.credits_paid + done.credits_returned,
        done.credits_reserved
    );
    relay.assert_books_balance().await;
}
