//! The ledger is append-only: SQLite itself refuses to change or remove a row.

use crate::common::{Contributor, TestRelay};
use axum::http::StatusCode;

#[tokio::test]
async fn ledger_rows_cannot_be_updated_or_deleted() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let lease = alice.lease(&relay).await.unwrap();
    let output = alice.compute(&relay, &lease).await;
    let reply = relay
        .post("/v1/results", &alice.submission(&lease, &output))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let balance = alice.balance(&relay).await;
    assert_eq!(balance, lease.flop as i64);

    for sql in [
        "UPDATE ledger SET amount = amount * 1000",
        "UPDATE ledger SET account = 'someone else'",
        "DELETE FROM ledger",
    ] {
        let refused = relay
            .state
            .db
            .call(move |conn| Ok(conn.execute(sql, [])?))
            .await
            .expect_err(sql);
        assert!(
            refused.to_string().contains("append-only"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(alice.balance(&relay).await, balance);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        1
    );

    // A second credit for the same result is refused by UNIQUE(result_id, kind).
    let duplicate = relay
        .state
        .db
        .call(|conn| {
            Ok(conn.execute(
                "INSERT INTO ledger (account, amount, kind, unit_id, result_id, created_at_ms)
                 SELECT account, amount, kind, unit_id, result_id, created_at_ms FROM ledger",
                [],
            )?)
        })
        .await;
    assert!(duplicate.is_err());
    assert_eq!(alice.balance(&relay).await, balance);
}
