//! Where handlers read the time. Locks, expiry, TTLs and activity depend on "now"; taking it from
//! a port lets unit tests move time forward instead of sleeping on the real clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::domain::timestamp::Timestamp;

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The clock handlers hold: shared, so one fake drives every part of a handler under test.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The real clock, as handlers get it by default.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until told to move, for tests.
#[derive(Debug)]
pub struct ManualClock {
    unix_millis: AtomicI64,
}

impl ManualClock {
    /// Starts at the real current time, so timestamps look plausible in assertions and logs.
    pub fn new() -> Arc<Self> {
        Self::at(Timestamp::now())
    }

    pub fn at(start: Timestamp) -> Arc<Self> {
        Arc::new(Self {
            unix_millis: AtomicI64::new(start.unix_millis()),
        })
    }

    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.unix_millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.unix_millis.load(Ordering::SeqCst))
            .unwrap_or(Timestamp::NEVER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(Timestamp::from_unix_millis(1_000).unwrap());
        assert_eq!(clock.now().unix_millis(), 1_000);
        assert_eq!(clock.now().unix_millis(), 1_000);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now().unix_millis(), 1_250);
    }
}
