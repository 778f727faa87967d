//! A bounded pool of token sessions or agent connections.
//!
//! At most `size` are in use at once; a request beyond that waits up to
//! [`WAIT`] for one to come back and then fails as unavailable (a stuck
//! token must not pile up blocked threads without bound). Idle ones are
//! kept for the next request; the caller decides whether one it used goes
//! back ([`Lease::keep`]) or is dropped.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::CaError;

/// Longest wait for a free session or connection.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Pool<T> {
    state: Mutex<State<T>>,
    freed: Condvar,
    size: usize,
}

struct State<T> {
    idle: Vec<T>,
    in_use: usize,
}

/// A claim on one of the pool's places, with the idle item it came with
/// (if any). Dropping it frees the place.
pub(crate) struct Lease<'a, T> {
    pool: &'a Pool<T>,
    /// An idle item handed out with the place; `None` means open a new one.
    pub(crate) idle: Option<T>,
}

impl<T> Pool<T> {
    pub(crate) fn new(size: usize) -> Pool<T> {
        Pool {
            state: Mutex::new(State {
                idle: Vec::new(),
                in_use: 0,
            }),
            freed: Condvar::new(),
            size: size.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims a place, waiting up to [`WAIT`].
    pub(crate) fn lease(&self) -> Result<Lease<'_, T>, CaError> {
        let guard = self.lock();
        let (mut st, timeout) = self
            .freed
            .wait_timeout_while(guard, WAIT, |st| st.in_use >= self.size)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() && st.in_use >= self.size {
            return Err(CaError::Unavailable(format!(
                "all {} CA sessions stayed busy for {} s",
                self.size,
                WAIT.as_secs()
            )));
        }
        st.in_use += 1;
        let idle = st.idle.pop();
        Ok(Lease { pool: self, idle })
    }

    /// Takes every idle item out (for an orderly close).
    pub(crate) fn drain(&self) -> Vec<T> {
        std::mem::take(&mut self.lock().idle)
    }
}

impl<T> Lease<'_, T> {
    /// Returns `item` to the pool for the next request.
    pub(crate) fn keep(&mut self, item: T) {
        self.pool.lock().idle.push(item);
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.in_use = st.in_use.saturating_sub(1);
        if let Some(item) = self.idle.take() {
            st.idle.push(item);
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}
