//! The Glowworm relay: it splits matrix-product jobs into units, leases them to contributors,
//! verifies what comes back, and keeps the credit ledger.
//!
//! Data flows through it like this:
//!
//! 1. A job C = A * B is split into tiles of C ([`jobs::create_matmul`]); each unit's inputs, an
//!    A row panel and a B column panel, are stored once as content-addressed [`blobs`]. While no
//!    other work is queued, the [`demo`] generator makes such jobs.
//! 2. `POST /v1/leases` checks that the request is signed by the key it names and is no replay
//!    ([`possession`]), and that the key, its linked address and its network hold fewer leases
//!    than they may ([`lease_caps`]); then [`leasing::lease_next`] expires overdue leases and
//!    leases the oldest pending unit to the contributor until a deadline.
//! 3. The contributor fetches the kernel (`GET /v1/kernels/{hash}`, from
//!    [`glowworm_protocol::kernels`]) and the input blobs (`GET /v1/blobs/{hash}`), computes, signs
//!    and posts the output to `POST /v1/results`.
//! 4. [`results::submit`] checks the lease, the holder, the output size and the signature,
//!    runs Freivalds' check ([`glowworm_protocol::freivalds`]), and in one transaction stores the output,
//!    marks the unit verified and appends 2·m·n·k credits to the append-only [`ledger`]. A unit
//!    whose proven contributors (trusted when they leased it) fail it too often is failed for
//!    good, and fails its job; what strangers do is charged to them, never to the job
//!    ([`units`]). Units no cheap check covers are
//!    replicated instead: [`replication`] compares the replicas of distinct contributors and
//!    credits the agreeing majority; [`canaries`] repeat verified units as known-answer checks;
//!    [`reputation`] trusts, and quarantines, contributors by their record.
//! 5. When every unit of a job is verified, [`jobs::complete_if_done`] marks it for assembly;
//!    the database's assembler thread streams its output (C, or the unit outputs in order) into
//!    a blob file off the writer thread ([`assembly`]), and then the job is done.
//!
//! A contributor can have its credits paid to an Ethereum address with one wallet signature:
//! `POST /v1/auth/nonce` ([`nonces`]) hands out a single-use nonce, and `POST /v1/auth/link`
//! ([`links::link`]) checks a Sign-In with Ethereum message ([`sign_in`], contract wallets
//! through [`erc1271`]) signed by the wallet and by the session key, then moves the key's
//! credits to the address and credits it from then on. `GET /v1/accounts/{address}`
//! ([`accounts`]) shows an address's credits and ledger.
//!
//! Partner sites embed the widget (`www/widget.js` frames `/widget.html`, whose framing
//! [`embedding`] restricts). Its leases carry the partner's address and the embedding origin;
//! [`partners`] checks and records them, and when such a lease's result is credited, credits the
//! partner a share on top in the same transaction. `GET /v1/partners/{address}` shows it by site.
//!
//! Everything shared with contributors (wire types, kernels, signing, verification) comes from
//! the `glowworm` crate. State lives in one SQLite database ([`db`]): one writer thread runs the
//! leases and results waiting at the same moment in one transaction and commits them together,
//! answering each only once that commit is in the WAL; reads use connections of their own. The
//! throughput benchmark (`relay/benches/throughput.rs`, `cargo xtask bench relay`) measures it,
//! with the stage counters of [`metrics`]. Time comes from a
//! [`Clock`], so tests can move past lease deadlines without sleeping. [`app`] builds the whole
//! HTTP service from an [`AppState`]; the `glowworm-relay` binary adds the listener, the demo
//! generator and graceful shutdown.

pub mod accounts;
pub mod api;
pub mod assembly;
pub mod blobs;
pub mod canaries;
pub mod clock;
pub mod config;
pub mod contributors;
pub mod db;
pub mod demo;
pub mod embedding;
pub mod erc1271;
pub mod error;
pub mod extract;
pub mod job_api;
pub mod jobs;
pub mod lease_caps;
pub mod leasing;
pub mod ledger;
pub mod limits;
pub mod links;
pub mod metrics;
pub mod network;
pub mod nonces;
pub use glowworm_protocol::npy;
pub mod partners;
pub mod possession;
pub mod random;
pub mod replication;
pub mod reputation;
pub mod requesters;
pub mod results;
pub mod serve;
pub mod sign_in;
pub mod state;
pub mod stats;
pub mod units;

pub use api::{OPENAPI_JSON, app, routes};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigError, ServeArgs};
pub use error::{ApiError, OpenError};
pub use state::AppState;
