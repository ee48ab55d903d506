//! `--last-known-good DURATION` (off by default): a digest that was verified under a policy
//! within that window is still admitted when it cannot be checked now (registry unreachable,
//! transparency log down: an `Outcome::Error`), with a warning. Never after a real failure: a
//! `Failed` verification of the digest under the policy ends its good standing until it is
//! verified again. The window is counted from the last fresh verification (a cache hit does
//! not extend it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Key, make_room};
use crate::verify::Outcome;

/// The last fresh verification result of each (policy, digest).
#[derive(Debug)]
pub(super) struct KnownGood {
    pub(super) window: Duration,
    /// Whether it was verified (else it failed), and when.
    last: Mutex<HashMap<Key, (bool, Instant)>>,
}

impl KnownGood {
    pub(super) fn new(window: Duration) -> Self {
        Self { window, last: Mutex::new(HashMap::new()) }
    }

    /// Remember a fresh verification's outcome (errors change nothing).
    pub(super) fn record(&self, key: &Key, outcome: &Outcome) {
        let verified = match outcome {
            Outcome::Verified { .. } => true,
            Outcome::Failed { .. } => false,
            Outcome::Error { .. } => return,
        };
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !last.contains_key(key) {
            let window = self.window;
            make_room(&mut last, now, |(_, at): &(bool, Instant)| Some(*at + window));
        }
        last.insert(key.clone(), (verified, now));
    }

    /// How long ago `key` was last verified, if that is within the window and it has not
    /// failed since.
    pub(super) fn verified_within(&self, key: &Key) -> Option<Duration> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (verified, at) = last.get(key)?;
        let ago = at.elapsed();
        (*verified && ago <= self.window).then_some(ago)
    }
}
