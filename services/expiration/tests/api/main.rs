//! Integration tests of the expiration service against real MongoDB and NATS.
#![allow(clippy::unwrap_used)]

mod schedule;
