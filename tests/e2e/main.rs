//! Black-box tests of Herald over real sockets: one test binary, one module
//! per capability.

mod bad_input;
mod crash;
mod delivery;
mod dlq;
#[cfg(feature = "fdb")]
mod fdb;
mod hostile;
mod isolation;
mod lifecycle;
mod nodes;
mod plugins;
mod retry;
