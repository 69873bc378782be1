//! The `ticketing` launcher and operator commands, as a library so tests drive them in-process.
//! The performance lab behind `bench`, `lag`, `catchup` and `saga-bench` is the `perf` crate.

pub mod concurrency;
pub mod dlq;
pub mod ingress;
pub mod openapi;
pub mod tail;
pub mod up;
