//! The plugin runtime: a small facade over wasmtime's component model for
//! the worlds in `wit/`.
//!
//! - [`engine`]: the shared engine, the empty WASI sandbox, per-call limits.
//! - [`limiter`]: memory and table limits with typed errors.
//! - [`validate`]: what an upload must be (a component, one Herald world,
//!   only allowed imports).
//! - [`registry`]: plugin records and binaries in the store, and the cache of
//!   compiled code by sha256.
//! - [`chain`]: running a topic's or subscription's attachments in order.

pub mod bindings;
pub mod chain;
pub mod engine;
pub mod limiter;
pub mod registry;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use engine::{Compiled, Invocation, PluginEngine};
pub use limiter::CallLimits;

/// The three plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    Filter,
    Transform,
    Delivery,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Transform => "transform",
            PluginKind::Delivery => "delivery",
        }
    }
}

/// Why a plugin could not be used or did not finish.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    #[error("not a valid plugin: {0}")]
    Invalid(String),
    #[error("ran past its CPU limit of {0} ms")]
    Timeout(u64),
    #[error("tried to use more than its memory limit of {0} bytes")]
    MemoryExceeded(usize),
    #[error("tried to grow a table past {max} elements", max = limiter::MAX_TABLE_ELEMENTS)]
    TableExceeded,
    #[error("output of {0} bytes is over its limit of {1} bytes")]
    OutputTooLarge(usize, usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned an error: {0}")]
    Returned(String),
    #[error("plugin engine: {0}")]
    Engine(String),
}

/// Limits for attaching plugins: each attachment may choose its own within
/// these ceilings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Default linear-memory cap per call.
    pub memory_bytes: usize,
    /// Highest memory cap an attachment may ask for.
    pub max_memory_bytes: usize,
    /// Default CPU cap per call, in milliseconds.
    pub timeout_ms: u64,
    /// Highest CPU cap an attachment may ask for.
    pub max_timeout_ms: u64,
    /// Default cap on a plugin's output (body or request body), in bytes.
    pub output_bytes: usize,
    /// Highest output cap an attachment may ask for.
    pub max_output_bytes: usize,
    /// Largest `.wasm` upload, in bytes.
    pub max_upload_bytes: usize,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            memory_bytes: 16 * 1024 * 1024,
            max_memory_bytes: 256 * 1024 * 1024,
            timeout_ms: 10,
            max_timeout_ms: 5_000,
            output_bytes: 1024 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            max_upload_bytes: 8 * 1024 * 1024,
        }
    }
}

impl PluginsConfig {
    pub fn default_limits(&self) -> CallLimits {
        CallLimits {
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            output_bytes: self.output_bytes,
        }
    }
}
