//! Adversarial contributors: native Rust running the crate's own protocol code
//! (`glowworm_protocol::protocol`, the code of the page and the native worker) against the relay, each
//! trying one way to be credited for work it did not do. None of them is.

use crate::common::{InProcess, RelayError, TestRelay};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::protocol::{self, ProtocolError};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{Lease, MatmulShape, ResultReceipt, ResultSubmission};

const SHAPE: MatmulShape = MatmulShape {
    m: 64 * 8,
    n: 64,
    k: 64,
};
const FLOP: i64 = 2 * 64 * 64 * 64;

/// A contributor speaking the real protocol.
struct Sim<'a> {
    key: ContributorKey,
    relay: InProcess<'a>,
}

impl<'a> Sim<'a> {
    fn new(relay: &'a TestRelay) -> Self {
        Sim {
            key: ContributorKey::generate().unwrap(),
            relay: InProcess { relay, ip: None },
        }
    }

    async fn lease(&self) -> Lease {
        protocol::lease(&self.relay, &self.key, None, self.relay.relay.clock_now())
            .await
            .unwrap()
            .expect("work is queued")
    }

    /// The correct output, computed from the inputs fetched with their hashes checked.
    async fn honest_output(&self, lease: &Lease) -> Vec<f32> {
        let a = protocol::input::<RelayError>(lease, "a").unwrap();
        let b = protocol::input::<RelayError>(lease, "b").unwrap();
        let (a, _) = protocol::fetch_f32_blob(&self.relay, a).await.unwrap();
        let (b, _) = protocol::fetch_f32_blob(&self.relay, b).await.unwrap();
        matmul::reference(&a, &b, lease.work.shape().unwrap())
    }

    async fn submit(
        &self,
        submission: &ResultSubmission,
    ) -> Result<ResultReceipt, ProtocolError<RelayError>> {
        protocol::submit(&self.relay, submission).await
    }

    async fn credits(&self) -> i64 {
        let path = format!("/v1/contributors/{}", self.key.public_hex());
        let reply = self.relay.relay.get(&path).await;
        if reply.status == 404 {
            return 0;
        }
        reply
            .json::<glowworm_protocol::wire::ContributorInfo>()
            .credits
    }
}

/// The relay's refusal code of a failed submission.
fn refusal(result: Result<ResultReceipt, ProtocolError<RelayError>>) -> (u16, String) {
    match result {
        Err(ProtocolError::Transport(e)) => (e.status, e.code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn noise(lease: &Lease, seed: u64) -> Vec<f32> {
    matmul::sample_matrix(
        lease.work.shape().unwrap().m * lease.work.shape().unwrap().n,
        seed,
    )
}

#[tokio::test]
async fn random_output_with_valid_signatures_is_never_credited_and_ends_in_quarantine() {
    let relay = TestRelay::new();
    relay.queue_job(SHAPE, None, 1).await;
    let cheat = Sim::new(&relay);
    for seed in 0..3 {
        let lease = cheat.lease().await;
        let submission = protocol::submission(&cheat.key, &lease, &noise(&lease, seed));
        assert_eq!(
            refusal(cheat.submit(&submission).await),
            (422, "verification_failed".into())
        );
    }
    assert_eq!(cheat.credits().await, 0);
    match protocol::lease(&cheat.relay, &cheat.key, None, relay.clock_now()).await {
        Err(ProtocolError::Transport(e)) => {
            assert_eq!((e.status, e.code.as_str()), (403, "quarantined"))
        }
        other => panic!("a quarantined contributor got {other:?}"),
    }
}

#[tokio::test]
async fn a_contributor_honest_for_n_units_then_cheating_is_credited_for_the_honest_ones_only() {
    let relay = TestRelay::new();
    relay.queue_job(SHAPE, None, 2).await;
    let sleeper = Sim::new(&relay);
    for _ in 0..4 {
        let lease = sleeper.lease().await;
        let output = sleeper.honest_output(&lease).await;
        let receipt = sleeper
            .submit(&protocol::submission(&sleeper.key, &lease, &output))
            .await
            .unwrap();
        assert_eq!(receipt.status, "verified");
    }
    for seed in 0..3 {
        let lease = sleeper.lease().await;
        // A plausible cheat: the right answer for most rows, one row of zeros.
        let mut output = sleeper.honest_output(&lease).await;
        let n = lease.work.shape().unwrap().n as usize;
        output[(seed as usize) * n..(seed as usize + 1) * n].fill(0.0);
        let submission = protocol::submission(&sleeper.key, &lease, &output);
        assert_eq!(refusal(sleeper.submit(&submission).await).0, 422);
    }
    assert_eq!(sleeper.credits().await, 4 * FLOP);
    let reply = relay
        .get(&format!("/v1/contributors/{}", sleeper.key.public_hex()))
        .await;
    let info: glowworm_protocol::wire::ContributorInfo = reply.json();
    assert!(info.reputation.quarantined);
    assert_eq!(
        (
            info.reputation.results_valid,
            info.reputation.results_invalid
        ),
        (4, 3)
    );
}

#[tokio::test]
async fn another_contributors_signed_result_cannot_be_claimed() {
    let relay = TestRelay::new();
    relay.queue_job(SHAPE, None, 3).await;
    let (worker, thief) = (Sim::new(&relay), Sim::new(&relay));
    let lease = worker.lease().await;
    let output = worker.honest_output(&lease).await;
    let signed = protocol::submission(&worker.key, &lease, &output);

    // Under the thief's key: the signature is the worker's, and the lease is too.
    let mut claimed = signed.clone();
    claimed.public_key = thief.key.public_hex();
    assert_eq!(
        refusal(thief.submit(&claimed).await),
        (403, "wrong_contributor".into())
    );
    // For a lease of the thief's own, with the worker's signature.
    let own = thief.lease().await;
    let mut moved = protocol::submission(&thief.key, &own, &output);
    moved.signature = signed.signature.clone();
    assert_eq!(
        refusal(thief.submit(&moved).await),
        (403, "bad_signature".into())
    );
    assert_eq!(thief.credits().await, 0);
    // The worker's own result is still its own.
    assert_eq!(worker.submit(&signed).await.unwrap().credited, FLOP);
}

#[tokio::test]
async fn a_copied_or_stale_output_under_ones_own_key_fails_verification() {
    let relay = TestRelay::new();
    relay.queue_job(SHAPE, None, 4).await;
    let (worker, copier) = (Sim::new(&relay), Sim::new(&relay));
    let lease = worker.lease().await;
    let output = worker.honest_output(&lease).await;
    worker
        .submit(&protocol::submission(&worker.key, &lease, &output))
        .await
        .unwrap();

    // Someone else's output for another unit, correctly signed by the copier.
    let own = copier.lease().await;
    assert_ne!(own.unit_id, lease.unit_id);
    let copied = protocol::submission(&copier.key, &own, &output);
    assert_eq!(refusal(copier.submit(&copied).await).0, 422);

    // The worker answering instantly with its own previous (stale) output.
    let next = worker.lease().await;
    let stale = protocol::submission(&worker.key, &next, &output);
    assert_eq!(
        refusal(worker.submit(&stale).await),
        (422, "verification_failed".into())
    );
    assert_eq!(copier.credits().await, 0);
    assert_eq!(worker.credits().await, FLOP);
}

#[tokio::test]
async fn a_flood_of_duplicate_submissions_is_credited_once() {
    let relay = TestRelay::new();
    relay.queue_job(SHAPE, None, 5).await;
    let flooder = Sim::new(&relay);
    let lease = flooder.lease().await;
    let output = flooder.honest_output(&lease).await;
    let submission = protocol::submission(&flooder.key, &lease, &output);
    let attempts = (0..24).map(|_| flooder.submit(&submission));
    let outcomes = futures_util::future::join_all(attempts).await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let conflicts = outcomes
        .into_iter()
        .filter_map(|o| o.err())
        .map(|e| match e {
            ProtocolError::Transport(e) => (e.status, e.code),
            other => panic!("{other}"),
        })
        .filter(|refusal| *refusal == (409, "already_submitted".to_string()))
        .count();
    assert_eq!((accepted, conflicts), (1, 23));
    assert_eq!(flooder.credits().await, FLOP);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind = 'unit_verified'")
            .await,
        1
    );
}

#[tokio::test]
async fn colluders_behind_one_network_cannot_replicate_each_others_wrong_answer() {
    let relay = TestRelay::with_config(|c| c.canary_permille = 0);
    relay
        .queue_job(
            MatmulShape {
                m: 64,
                n: 64,
                k: 64,
            },
            Some(2),
            6,
        )
        .await;
    let ip = Some("203.0.113.10".parse().unwrap());
    let first = Sim {
        key: ContributorKey::generate().unwrap(),
        relay: InProcess { relay: &relay, ip },
    };
    let lease = first.lease().await;
    let wrong = noise(&lease, 7);
    let receipt = first
        .submit(&protocol::submission(&first.key, &lease, &wrong))
        .await
        .unwrap();
    assert_eq!(receipt.status, "pending");
    let partner = Sim {
        key: ContributorKey::generate().unwrap(),
        relay: InProcess {
            relay: &relay,
            ip: Some("203.0.113.11".parse().unwrap()),
        },
    };
    assert!(
        protocol::lease(&partner.relay, &partner.key, None, relay.clock_now())
            .await
            .unwrap()
            .is_none(),
        "the partner on the same /24 never holds the other replica"
    );
    assert_eq!(first.credits().await, 0);
}
