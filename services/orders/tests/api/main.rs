//! Integration tests of the orders service against real MongoDB and NATS.
#![allow(clippy::unwrap_used)]

mod helpers;
mod lifecycle;
mod open_orders;
mod openapi;
mod orders;
mod replica;
