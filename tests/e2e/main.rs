//! Black-box tests of Herald over real sockets: one test binary, one module
//! per capability.

mod bad_input;
mod crash;
mod delivery;
mod dlq;
mod isolation;
mod lifecycle;
mod retry;
