//! The kubelet's restart and image-pull back-off: the first retry is immediate, then each
//! waits twice as long as the one before (10 s, 20 s, 40 s ... at most 5 minutes), and a
//! container that stayed up for twice the maximum starts over.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// The current delay and when it started; `None` before the first retry.
    entry: Option<(Duration, Instant)>,
}

impl Backoff {
    /// `Ok` when a retry may happen now (and records it, growing the next delay);
    /// `Err(remaining)` while in back-off.
    pub fn attempt(&mut self, config: &BackoffConfig, now: Instant) -> Result<(), Duration> {
        match self.entry {
            Some((delay, since)) if now < since + delay => Err(since + delay - now),
            Some((delay, since)) if now.duration_since(since) < config.max * 2 => {
                self.entry = Some(((delay * 2).min(config.max), now));
                Ok(())
            }
            _ => {
                self.entry = Some((config.initial, now));
                Ok(())
            }
        }
    }

    /// How long until a retry may happen, while in back-off; `None` when [`Backoff::attempt`]
    /// would allow it now. Looks only, records nothing.
    pub fn pending(&self, now: Instant) -> Option<Duration> {
        match self.entry {
            Some((delay, since)) if now < since + delay => Some(since + delay - now),
            _ => None,
        }
    }

    /// The delay that is (or was last) running, for messages ("back-off 20s ...").
    pub fn delay(&self) -> Option<Duration> {
        self.entry.map(|(d, _)| d)
    }

    pub fn reset(&mut self) {
        self.entry = None;
    }
}

/// A duration as Go's time.Duration prints it, to the millisecond: "500ms", "2.5s",
/// "10s", "1m20s", "5m0s".
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let seconds = match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        frac => format!(
            "{}.{}s",
            ms / 1000,
            format!("{frac:03}").trim_end_matches('0')
        ),
    };
    if minutes == 0 {
        seconds
    } else {
        format!("{minutes}m{seconds}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_ten_seconds_to_five_minutes() {
        let config = BackoffConfig::default();
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(
            b.attempt(&config, t0),
            Ok(()),
            "the first retry is immediate"
        );
        assert_eq!(
            b.attempt(&config, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        let mut now = t0 + Duration::from_secs(10);
        let mut delays = vec![];
        for _ in 0..7 {
            assert_eq!(b.attempt(&config, now), Ok(()));
            delays.push(b.delay().unwrap().as_secs());
            now += b.delay().unwrap();
        }
        assert_eq!(delays, vec![20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn pending_says_what_attempt_would_refuse_without_recording_it() {
        let config = BackoffConfig::default();
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(
            b.pending(t0),
            None,
            "nothing to wait for before the first retry"
        );
        b.attempt(&config, t0).unwrap();
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(b.pending(t1), Some(Duration::from_secs(6)));
        assert_eq!(
            b.pending(t1),
            Some(Duration::from_secs(6)),
            "looking records nothing"
        );
        assert_eq!(b.attempt(&config, t1), Err(Duration::from_secs(6)));
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!(b.pending(t2), None);
        assert_eq!(b.attempt(&config, t2), Ok(()));
    }

    #[test]
    fn a_long_quiet_spell_starts_over() {
        let config = BackoffConfig::default();
        let mut b = Backoff::default();
        let t0 = Instant::now();
        b.attempt(&config, t0).unwrap();
        b.attempt(&config, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(b.delay(), Some(Duration::from_secs(20)));
        b.attempt(&config, t0 + Duration::from_secs(700)).unwrap();
        assert_eq!(b.delay(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_millis(80_250)), "1m20.25s");
    }
}
