//! The guest SDK for Herald plugins: sandboxed WebAssembly components that
//! filter messages, rewrite them, or shape the HTTP request of a delivery.
//!
//! ```
//! use herald_sdk::{filter, Message, Verdict};
//!
//! #[filter]
//! fn keep_big(msg: &Message) -> Result<Verdict, String> {
//!     Ok(Verdict::accept_if(msg.body.len() > 1024))
//! }
//! ```
//!
//! # Layout
//!
//! - [`filter`], [`transform`], [`delivery`]: the attributes that turn a plain
//!   fn into a plugin's export; the fn stays callable, so unit tests call it.
//! - [`Message`], [`Verdict`], [`OutgoingRequest`]: the WIT types, with
//!   helpers (`message.rs`).
//! - [`log`]: the host's structured log.
//! - [`config`]: the JSON config given when the plugin was attached.
//! - `bindings`: what `wit-bindgen` generates from `wit/`, one module per
//!   world; reached by the macros through `__private`.
//!
//! Plugins get no filesystem, network or environment, and must not rely on
//! state kept between calls: Herald may run each call in a fresh instance.

mod bindings;
pub mod log;
mod message;

pub use bindings::filter::herald::plugin::types::{Message, OutgoingRequest, Verdict};
pub use herald_sdk_macros::{delivery, filter, transform};
pub use serde;
pub use serde_json;
pub use wit_bindgen;

use bindings::filter::herald::plugin::host;

/// The raw JSON config given when the plugin was attached; `{}` if none.
///
/// Off wasm (in unit tests) there is no host, and this is always `{}`.
pub fn config_json() -> String {
    if cfg!(target_arch = "wasm32") {
        host::config()
    } else {
        String::from("{}")
    }
}

/// The config given when the plugin was attached, parsed as `T`.
///
/// The attributes call this for a typed second (or third) parameter, so most
/// plugins never do.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, ConfigError> {
    serde_json::from_str(&config_json()).map_err(ConfigError)
}

/// The attached config does not parse as the plugin's config type.
#[derive(Debug)]
pub struct ConfigError(pub serde_json::Error);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

// So `config::<T>()?` works in a plugin fn, whose error type is `String`.
impl From<ConfigError> for String {
    fn from(error: ConfigError) -> String {
        error.to_string()
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{delivery, filter, transform};
}
