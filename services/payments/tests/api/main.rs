//! Integration tests of the payments service against real MongoDB and NATS, and of the Stripe
//! adapter against a local HTTP server.
#![allow(clippy::unwrap_used)]

mod openapi;
mod payments;
mod stripe;
