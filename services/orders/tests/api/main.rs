//! Integration tests of the orders service against real MongoDB and NATS.
#![allow(clippy::unwrap_used)]

mod helpers;
mod lifecycle;
mod openapi;
mod orders;
mod replica;
