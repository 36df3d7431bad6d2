//! Herald: a self-hosted notification gateway.
//!
//! # Layout
//! - [`server`]: assembles a node (store, metadata, API, sender) and runs it.
//! - [`config`]: layered config (defaults, TOML file, `HERALD_*`, flags).
//! - [`api`]: the axum REST API v1; every error is [`error::ApiError`].
//! - [`metadata`]: topics and subscriptions, through a moka cache that a
//!   metadata version key keeps coherent across nodes.
//! - [`messages`]: message headers and chunked bodies as stored.
//! - [`deliveries`]: delivery records in the due index, and the
//!   transactions that lease, retry, dead-letter, park and redrive them.
//! - [`sender`]: fan-out and delivery workers, the per-endpoint limits, and
//!   one attempt's request, signature and outcome.
//! - [`store`]: the [`store::Kv`] trait with FoundationDB semantics, its
//!   embedded redb backend, the FoundationDB backend (cargo feature `fdb`),
//!   the keyspace and the conformance suite.
//! - [`plugins`]: the wasmtime component host for the worlds in `wit/`:
//!   sandbox, limits, upload validation, registry and attachment chains.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`metrics`]: Prometheus metrics.
//! - [`time`]: wall-clock helpers.
//!
//! A message's path: `api::publish` writes it and a fan-out task in one
//! transaction; `sender::fanout` turns the task into due deliveries;
//! `sender` claims them, `sender::attempt` sends them, and
//! `deliveries::apply` records the outcome.

pub mod api;
pub mod config;
pub mod deliveries;
pub mod error;
pub mod messages;
pub mod metadata;
pub mod metrics;
pub mod plugins;
pub mod sender;
pub mod server;
pub mod signing;
pub mod store;
pub mod time;
