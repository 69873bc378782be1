//! Hostile input: property-based fuzzing (proptest) of every route's path, query, headers and
//! body against the whole stack. Whatever arrives, nothing answers 5xx; every 4xx of an `/api/*`
//! route is in the error shape; only the owner ever succeeds on an owner-only route; and a
//! session that is not valid reads as signed out. The browser client's pages answer HTML and
//! only promise never to fail with a 5xx.
//!
//! Each test starts one stack with fixtures (an owner and a stranger, their tickets and orders)
//! and runs a proptest `TestRunner` per route on it, the cases sent one after another from a
//! blocking section of the async test. A failing case is shrunk to a minimal request, and every
//! route's failures are reported together with the seed to replay them.
//!
//! `FUZZ_CASES` sets the cases per route (default 200; routes with bodies get more) and
//! `FUZZ_SEED` fixes the seed (default: a fresh one each run, printed with the counts).
//!
//! - `routes`: the tests, one runner per route, and the regressions fuzzing found.
//! - `oracle`: what every answer must satisfy, and the checks of single routes.
//! - `runner`: the stack, its configuration, sending a case, shrinking and the report.
//! - `fixtures`: who and what the cases aim at, forged sessions included.
//! - `case`: what one case is (a request with its sender as a role).
//! - `strategies`: generators of senders, headers, paths and queries.
//! - `bodies`: generators of field values and of the JSON and form bodies built of them.

mod bodies;
mod case;
mod fixtures;
mod oracle;
mod routes;
mod runner;
mod strategies;
