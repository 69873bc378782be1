//! The performance lab: load, latency and this machine's limits, measured against a running
//! stack. The launcher serves it as `ticketing bench`, `lag`, `catchup` and `saga-bench`.

pub mod bench;
pub mod catchup;
pub mod client;
pub mod lag;
pub mod saga;
mod throwaway;
