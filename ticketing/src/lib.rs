//! The `ticketing` launcher and operator commands, as a library so tests drive them in-process.

pub mod bench;
pub mod catchup;
mod client;
pub mod concurrency;
pub mod dlq;
pub mod lag;
pub mod postman;
pub mod saga;
pub mod tail;
pub mod up;
