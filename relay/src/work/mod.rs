//! Work: jobs, their units and leases, and every result's way from check to verify to
//! settle.
//!
//! - Jobs are split into units ([`jobs`], [`units`]; uploads parsed by [`glowworm_protocol::npy`]; [`demo`] jobs
//!   while nobody else has work), leased to contributors ([`leasing`], within [`lease_caps`];
//!   known-answer [`canaries`] now and then), and their outputs assembled ([`assembly`]).
//! - A result is checked ([`results::check`]), verified by Freivalds' check or by comparing
//!   replicas ([`results::verify`], [`replication::decide`]) and settled ([`settlement`]: the
//!   one place credits are made), with no way back. [`result_rows`] owns the `results` table.
//!
//! Layer: imports the bottom, [`crate::store`] and [`crate::accounts`]; never http.

pub mod assembly;
pub mod canaries;
pub mod demo;
pub mod jobs;
pub mod lease_caps;
pub mod leasing;
pub mod pricing;
pub mod replication;
pub mod result_rows;
pub mod results;
pub mod settlement;
pub mod stats;
pub mod units;
