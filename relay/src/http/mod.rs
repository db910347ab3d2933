//! HTTP: the router and one small handler per endpoint ([`api`], [`job_api`]), the state they
//! share ([`state`]), what they extract from requests ([`extract`], [`network`]), proof that a
//! request comes from the key it names ([`possession`]), rate limits and deadlines
//! ([`limits`], [`middleware`]), framing rules ([`embedding`]), the static page ([`page`]),
//! metrics and health checks ([`ops`]) and the listener ([`serve`]).
//!
//! Layer: the top; it may import everything below.

pub mod api;
pub mod embedding;
pub mod extract;
pub mod job_api;
pub mod limits;
pub mod middleware;
pub mod network;
pub mod ops;
pub mod page;
pub mod possession;
pub mod serve;
pub mod state;
