//! Accounts: who contributes and who pays, and what each is owed. Contributor keys
//! ([`contributors`]) and their record ([`reputation`]), wallet links by Sign-In with Ethereum
//! ([`links`], [`nonces`], [`sign_in`], [`erc1271`]), requesters' API keys ([`requesters`]),
//! partner sites and their share ([`partners`]), the double-entry ledger ([`ledger`]), the
//! epochs that state every address's earnings as a Merkle tree ([`epochs`]), the payout
//! contract's deposits, roots and claims ([`payout_chain`]), and what the relay
//! shows of an account ([`statements`]).
//!
//! Layer: imports the bottom (config, errors, ids) and [`crate::store`]; never work or http.

pub mod contributors;
pub mod epochs;
pub mod erc1271;
pub mod ledger;
pub mod links;
pub mod nonces;
pub mod partners;
pub mod payout_chain;
pub mod reputation;
pub mod requesters;
pub mod sign_in;
pub mod statements;
