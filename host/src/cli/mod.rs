//! Commands of the `herald` binary beyond `serve`.

pub mod bench;
pub mod plugin;
pub mod receive;
