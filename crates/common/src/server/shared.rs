//! The state a service's handlers share, behind one reference count.
//!
//! axum clones a router's state for every request (each route's boxed service is cloned per
//! call), so a state made of many handles costs one atomic count up and down per handle per
//! request; behind one `Arc` it costs one.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::rate_limit::RateLimiter;
use crate::session::Sessions;

/// `T` shared by every request; handlers reach `T`'s fields through `Deref`, extractors take
/// the sessions and the rate limiter through `FromRef` (`T: AsRef<…>`).
#[derive(Debug)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    /// Shares `state`.
    pub fn new(state: T) -> Self {
        Self(Arc::new(state))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: AsRef<Sessions>> FromRef<Shared<T>> for Sessions {
    fn from_ref(state: &Shared<T>) -> Self {
        AsRef::<Sessions>::as_ref(&*state.0).clone()
    }
}

impl<T: AsRef<RateLimiter>> FromRef<Shared<T>> for RateLimiter {
    fn from_ref(state: &Shared<T>) -> Self {
        AsRef::<RateLimiter>::as_ref(&*state.0).clone()
    }
}
