//! How recently a tunnel connection carried traffic: what the idle and unused timeouts read.

/// When a connection last carried traffic, and whether it ever did; shared by its tasks
/// without a lock.
#[derive(Debug)]
pub(crate) struct Activity {
    since: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    carried: std::sync::atomic::AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: std::time::Instant::now(),
            last_ms: Default::default(),
            carried: Default::default(),
        }
    }
}

impl Activity {
    /// Bytes went one way or the other.
    pub(crate) fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.carried
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since bytes last went either way (or since the connection began).
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.since
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }

    /// The peer showed it still has the connection (proxy1's probe, at proxy2), without
    /// carrying a byte: it counts as recent activity, not as data.
    pub(crate) fn keepalive(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// When bytes last went (or when the connection began, if they never did).
    pub(crate) fn last_touch(&self) -> std::time::Instant {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.since + std::time::Duration::from_millis(last)
    }

    /// Whether the connection has carried a byte either way.
    pub(crate) fn carried(&self) -> bool {
        self.carried.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether it should give its id back: idle past `idle_timeout`, or never used and
    /// quiet past `unused_timeout`. Says which, for the log.
    pub(crate) fn expired(
        &self,
        idle_timeout: std::time::Duration,
        unused_timeout: std::time::Duration,
    ) -> Option<&'static str> {
        if !self.carried() && self.idle_for() >= unused_timeout {
            Some("carried no data")
        } else if self.idle_for() >= idle_timeout {
            Some("idle")
        } else {
            None
        }
    }
}
