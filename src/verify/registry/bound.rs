//! At most N requests in flight to one registry host (`--registry-concurrency`), shared by every
//! review: a burst of cold reviews queues here instead of opening hundreds of connections to a
//! registry that rate-limits. The wait counts against the review's deadline; a request that gets
//! no slot in time is an error naming the host and the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::RegistryError;
use crate::verify::observe::{self, Observer};

/// Requests in flight to one registry host unless configured.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Hosts tracked before idle ones are forgotten (hosts come from workloads' image references).
const MAX_HOSTS: usize = 1024;

/// Slots per registry host.
#[derive(Debug)]
pub struct HostSlots {
    limit: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostSlots {
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), hosts: Mutex::new(HashMap::new()) }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(semaphore) = hosts.get(host) {
            return Arc::clone(semaphore);
        }
        if hosts.len() >= MAX_HOSTS {
            // Forget idle hosts (all their slots free); busy ones keep bounding.
            hosts.retain(|_, s| s.available_permits() < self.limit);
        }
        let semaphore = Arc::new(Semaphore::new(self.limit));
        hosts.insert(host.to_owned(), Arc::clone(&semaphore));
        semaphore
    }

    /// A slot for one request to `host`, waited for until the review's deadline.
    pub async fn acquire(&self, host: &str, observer: &dyn Observer) -> Result<OwnedSemaphorePermit, RegistryError> {
        let semaphore = self.semaphore(host);
        if let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
            return Ok(permit);
        }
        let limit = self.limit;
        let report = WaitReport { host, started: Instant::now(), observer };
        let waiting = observe::call(|| {
            format!("waiting for one of the {limit} request slots of {host} (--registry-concurrency)")
        });
        let acquired = match observe::deadline() {
            Some(deadline) => tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await.ok(),
            None => Some(semaphore.acquire_owned().await),
        };
        let waited = report.started.elapsed();
        drop(report);
        match acquired {
            Some(Ok(permit)) => {
                waiting.done();
                Ok(permit)
            }
            _ => Err(RegistryError::Busy { host: host.to_owned(), limit, waited_ms: millis(waited) }),
        }
    }
}

/// Reports a wait when it ends, also when the review's deadline cancels it.
struct WaitReport<'a> {
    host: &'a str,
    started: Instant,
    observer: &'a dyn Observer,
}

impl Drop for WaitReport<'_> {
    fn drop(&mut self) {
        self.observer.registry_queue_wait(self.host, self.started.elapsed());
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::verify::observe::ReviewScope;

    #[derive(Default)]
    struct Waits(AtomicU64);

    impl Observer for Waits {
        fn registry_queue_wait(&self, _host: &str, _elapsed: Duration) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_host_makes_requests_wait_until_the_deadline() {
        let slots = HostSlots::new(2);
        let waits = Waits::default();
        let a = slots.acquire("r.example", &waits).await.expect("first");
        let _b = slots.acquire("r.example", &waits).await.expect("second");
        // Another host has its own slots.
        let _other = slots.acquire("other.example", &waits).await.expect("other host");
        assert_eq!(waits.0.load(Ordering::SeqCst), 0, "no wait while slots are free");
        // The third waits; released within the deadline, it gets the slot.
        let scope = ReviewScope::new(Some(Instant::now() + Duration::from_secs(1)));
        let release = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(a);
        };
        let (third, ()) = tokio::join!(scope.run(slots.acquire("r.example", &waits)), release);
        assert!(third.is_ok());
        assert_eq!(waits.0.load(Ordering::SeqCst), 1);
        // Nothing released: the wait ends at the deadline with an error naming host and limit,
        // and the review's slow call is that wait.
        let scope = ReviewScope::new(Some(Instant::now() + Duration::from_millis(300)));
        let err = scope.clone().run(slots.acquire("r.example", &waits)).await.expect_err("no slot");
        assert_eq!(err, RegistryError::Busy { host: "r.example".into(), limit: 2, waited_ms: 300 });
        assert!(err.to_string().contains("--registry-concurrency"), "{err}");
        let slow = scope.calls.slowest().expect("slow call");
        assert!(slow.contains("waiting for one of the 2 request slots of r.example"), "{slow}");
    }

    #[test]
    fn idle_hosts_are_forgotten_past_the_bound() {
        let slots = HostSlots::new(1);
        for i in 0..MAX_HOSTS + 10 {
            let _ = slots.semaphore(&format!("h{i}.example"));
        }
        assert!(slots.hosts.lock().expect("lock").len() <= MAX_HOSTS);
    }
}
