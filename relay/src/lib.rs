//! The Glowworm relay: it splits jobs into units, leases them to contributors, verifies what
//! comes back, and keeps the credit ledger.
//!
//! Its modules sit in layers, each importing only those below it (a test,
//! `relay/tests/integration/layers.rs`, keeps it so, and ARCHITECTURE.md has the table):
//!
//! | Layer | What it owns |
//! | --- | --- |
//! | [`http`] | the router, handlers, request extractors, rate limits, the listener |
//! | [`work`] | jobs, units, leases, and each result's check, verification and settlement |
//! | [`accounts`] | contributor keys and their record, wallet links, requesters, partners, the ledger |
//! | [`store`] | the SQLite database (one grouped writer, readers) and the blob store |
//! | bottom | [`config`], [`error`], [`ids`] (identifiers from outside), [`clock`], [`random`], [`metrics`], [`telemetry`], [`sql_enum`] |
//!
//! Data flows through it like this:
//!
//! 1. A job C = A * B is split into tiles of C ([`work::jobs::create_matmul`]); each unit's
//!    inputs, an A row panel and a B column panel, are stored once as content-addressed blobs
//!    ([`store::blobs`]). While no other work is queued, the [`work::demo`] generator makes
//!    such jobs.
//! 2. `POST /v1/leases` checks that the request is signed by the key it names and is no replay
//!    ([`http::possession`]), and that the key, its linked address and its network hold fewer
//!    leases than they may ([`work::lease_caps`]); then [`work::leasing::lease_next`] expires
//!    overdue leases and leases the oldest pending unit to the contributor until a deadline.
//! 3. The contributor fetches the kernel (`GET /v1/kernels/{hash}`) and the input blobs
//!    (`GET /v1/blobs/{hash}`), computes, signs and posts the output to `POST /v1/results`.
//! 4. check -> verify -> settle, with no way back: [`work::results::check`] checks the lease,
//!    the holder, the output size and the signature; [`work::results::verify`] runs Freivalds'
//!    check, or for a replicated unit [`work::replication::decide`] compares the replicas of
//!    distinct contributors; [`work::settlement`], the one place credits are made, carries out
//!    the verdict in the transaction that stores the result: the unit verified, the contributor
//!    (and a partner's share) credited in the append-only [`accounts::ledger`], strikes and
//!    quarantines by [`accounts::reputation`]. What strangers do is charged to them, never to a
//!    job ([`work::units`]).
//! 5. When every unit of a job is verified, [`work::jobs::complete_if_done`] marks it for
//!    assembly; the assembler thread ([`work::assembly`]) streams its output into a blob file
//!    off the writer thread, and then the job is done.
//!
//! A contributor can have its credits paid to an Ethereum address with one wallet signature
//! ([`accounts::links`]). Partner sites embed the widget; [`accounts::partners`] credits a
//! partner's share of what its widget computed.
//!
//! Everything shared with contributors (wire types, kernels, signing, verification) comes from
//! the shared crate. State lives in one SQLite database ([`store`]): one writer thread runs the
//! leases and results waiting at the same moment in one transaction and commits them together,
//! answering each only once that commit is in the WAL. Time comes from a [`Clock`], so tests
//! can move past lease deadlines without sleeping. [`app`] builds the whole HTTP service from
//! an [`AppState`]; the `glowworm-relay` binary adds the listener, the demo generator and
//! graceful shutdown.

// The bottom: settings, errors, identifiers, time and randomness. They import nothing above.
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod random;
pub mod relay_key;
pub mod sql_enum;
pub mod telemetry;

// Then each layer imports only the layers below it.
pub mod accounts;
pub mod http;
pub mod store;
pub mod work;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, DatabaseArgs, ServeArgs};
pub use error::{ApiError, ConfigError, OpenError};
pub use http::api::{OPENAPI_JSON, app, routes};
pub use http::state::AppState;
