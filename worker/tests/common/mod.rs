//! What the worker's tests share: a real relay on 127.0.0.1 (port 0, SQLite in a temp dir) with
//! small demo jobs (6 units of 32 x 32 each) and no generator, so each test queues its own.

use glowworm_relay::{AppState, Config, app};

/// Starts a relay whose database lives in `dir`, with its demo budget granted (demo jobs are
/// paid from it); returns its base URL and its state.
pub async fn start_relay(dir: &tempfile::TempDir) -> (String, AppState) {
    start_relay_with(dir, |_| {}).await
}

/// [`start_relay`] with settings changed by `adjust`.
pub async fn start_relay_with(
    dir: &tempfile::TempDir,
    adjust: impl FnOnce(&mut Config),
) -> (String, AppState) {
    let mut config = Config {
        database: dir.path().join("relay.sqlite"),
        demo_jobs: false,
        unit_size: 32,
        demo_m: 96,
        demo_n: 64,
        demo_k: 48,
        ..Config::default()
    };
    adjust(&mut config);
    let mut state = AppState::open(config).expect("relay state");
    if let Some(chain) = glowworm_relay::accounts::payout_chain::PayoutChain::connect(&state.config)
        .await
        .expect("the payout contract's chain")
    {
        state.payout_chain = Some(std::sync::Arc::new(chain));
    }
    let now = state.now_ms();
    state
        .db
        .call(move |conn| {
            glowworm_relay::accounts::ledger::grant(
                conn,
                glowworm_relay::accounts::ledger::DEMO_BUDGET,
                1_000_000_000_000_000,
                "tests",
                now,
            )
        })
        .await
        .expect("the demo budget");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, state)
}
