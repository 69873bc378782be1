//! The marketplace on clustered servers, as `cargo xtask up --ha` runs it: a 3-member MongoDB
//! replica set, a 3-server NATS JetStream cluster with the streams on all three, and tickets and
//! orders as two processes each behind the ingress. The faults it must ride through under a
//! steady write load — the MongoDB primary, the NATS server leading the event stream, one
//! process of tickets and one of orders, each killed with SIGKILL — and the concurrency test
//! on it. One cluster for the binary (`stack.rs`); the tests take turns on it.
#![allow(clippy::unwrap_used)]

mod faults;
mod load;
mod scale;
mod stack;
