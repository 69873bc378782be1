//! The `ticketing` launcher and operator commands, as a library so tests drive them in-process.

pub mod concurrency;
pub mod tail;
pub mod up;
