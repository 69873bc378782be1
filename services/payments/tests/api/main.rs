//! Integration tests of the payments service against real MongoDB and NATS, of the Stripe
//! adapter, and of the payment saga against the fake Stripe of `test-support`.
#![allow(clippy::unwrap_used)]

mod openapi;
mod payments;
mod saga;
mod stripe;
