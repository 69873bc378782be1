//! Integration tests of the auth service against a real MongoDB.
#![allow(clippy::unwrap_used)]

mod currentuser;
mod helpers;
mod http;
mod openapi;
mod rate_limit;
mod signin;
mod signout;
mod signup;
