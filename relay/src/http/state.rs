//! The state every request handler shares: settings, database, clock, recent leases and rate
//! limits.

use crate::accounts::epochs::TreeCache;
use crate::accounts::payout_chain::PayoutChain;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::OpenError;
use crate::http::limits::Limits;
use crate::http::possession::SignedRequests;
use crate::store::Db;
use crate::work::assembly::Assembler;
use crate::work::leasing::RecentLeases;
use glowworm_protocol::signing::RelayKey;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Leases issued lately, so a result's first checks need no database read.
    pub leases: Arc<RecentLeases>,
    /// Rate limits per client address and per key.
    pub limits: Arc<Limits>,
    /// The last signed lease request of each key, against replays.
    pub signed_requests: Arc<SignedRequests>,
    /// The thread that writes finished jobs' outputs.
    pub assembler: Assembler,
    /// The relay's own key, which signs every credit's receipt ([`crate::relay_key`]).
    pub relay_key: Arc<RelayKey>,
    /// The latest epoch's earnings tree, for payouts' proofs.
    pub epoch_trees: Arc<TreeCache>,
    /// The payout contract, when the settings name a chain (set by the binary after
    /// [`PayoutChain::connect`], which needs the async runtime).
    pub payout_chain: Option<Arc<PayoutChain>>,
}

impl AppState {
    /// Validates the settings (the partner settings with [`crate::accounts::partners::validate_config`])
    /// and opens the database, with the system clock.
    pub fn open(config: Config) -> Result<AppState, OpenError> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`AppState::open`] with another clock (tests pass a [`crate::ManualClock`]).
    pub fn open_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, OpenError> {
        config.validate()?;
        crate::accounts::partners::validate_config(&config)
            .map_err(|message| OpenError::Config(crate::error::ConfigError::Invalid(message)))?;
        let key_path = config
            .relay_key_file
            .clone()
            .unwrap_or_else(|| crate::relay_key::default_path(&config.database));
        let db = Db::open(&config.database)?;
        let relay_key = Arc::new(crate::relay_key::load_or_create(&key_path)?);
        let assembler = Assembler::start(&db)?;
        Ok(AppState {
            assembler,
            relay_key,
            epoch_trees: Arc::new(TreeCache::default()),
            payout_chain: None,
            limits: Arc::new(Limits::new(&config)),
            config: Arc::new(config),
            db,
            clock,
            leases: Arc::new(RecentLeases::default()),
            signed_requests: Arc::new(SignedRequests::default()),
        })
    }

    /// Charges a request to the per-key rate limit of a contributor's (canonical) public key;
    /// call it only once the request is known to come from the key.
    pub fn limit_contributor(&self, key: &str) -> Result<(), crate::error::ApiError> {
        self.limits.check_key(&format!("contributor:{key}"))
    }

    /// The current time in Unix milliseconds, from the state's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
