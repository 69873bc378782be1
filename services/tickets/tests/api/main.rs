//! Integration tests of the tickets service against real MongoDB and NATS.
#![allow(clippy::unwrap_used)]

mod combined;
mod events;
mod full_stream;
mod helpers;
mod hostile;
mod metrics;
mod openapi;
mod tickets;
