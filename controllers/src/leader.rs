//! Leader election through coordination.k8s.io/v1 Leases, the way client-go's
//! `leaderelection` package does it: one Lease per loop (`kybern-<loop>` in
//! `kube-system`), held by `holderIdentity` for `leaseDurationSeconds` after the last
//! `renewTime`, taken over only once expired, every write guarded by resourceVersion.
//! The work runs only while this process leads; losing the lease drops its future.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Where every kybern lease lives, as upstream's controller-manager leases do.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// How long a lease stays valid after its last renewal (upstream's default, 15 s).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews: three renewals fit in one lease duration, so two
/// lost requests in a row still do not let the lease lapse.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// How often a follower looks at the lease again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing lease {name}: {source}")]
    Api { name: String, source: kube::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a candidate should do, given the lease as it is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it lapse: take it.
    Acquire,
    /// We hold it: write a fresh renewTime.
    Renew,
    /// Someone else holds it, for this many more milliseconds.
    Follow { holder: String, remaining_ms: i64 },
}

/// The pure rule of leader election: a lease is ours to renew if we hold it, ours to
/// take if it is free or expired (renewTime + leaseDurationSeconds <= now), and
/// someone else's otherwise. A lease without renewTime has expired.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration_ms = i64::from(
        spec.lease_duration_seconds
            .unwrap_or(LEASE_DURATION.as_secs() as i32),
    ) * 1000;
    let Some(renewed) = &spec.renew_time else {
        return Decision::Acquire;
    };
    let remaining_ms = renewed.0.as_millisecond() + duration_ms - now.as_millisecond();
    if remaining_ms <= 0 {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_string(),
            remaining_ms,
        }
    }
}

/// The lease spec a holder writes: acquireTime and transitions move only on a change
/// of holder, renewTime on every write.
pub fn next_spec(previous: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseSpec {
    let prev = previous.cloned().unwrap_or_default();
    let changed_hands = prev.holder_identity.as_deref() != Some(me);
    let transitions = prev.lease_transitions.unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if changed_hands {
            Some(MicroTime(now))
        } else {
            prev.acquire_time.clone()
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if changed_hands && previous.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..prev
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { expires_in: Duration },
}

/// One candidate for one lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    pub fn new(client: kube::Client, lease_name: &str, identity: &str) -> Self {
        Elector {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            name: lease_name.to_string(),
            identity: identity.to_string(),
        }
    }

    /// One round: reads the lease and acquires or renews it if the rule allows.
    /// Returns whether we lead afterwards; a lost write race (409) means we do not.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        Ok(self.attempt().await? == Attempt::Leading)
    }

    async fn attempt(&self) -> Result<Attempt> {
        let err = |source| Error::Api {
            name: self.name.clone(),
            source,
        };
        let current = self.api.get_opt(&self.name).await.map_err(err)?;
        let now = Timestamp::now();
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        if let Decision::Follow { remaining_ms, .. } = decide(spec, &self.identity, now) {
            return Ok(Attempt::Following {
                expires_in: Duration::from_millis(remaining_ms.max(0) as u64),
            });
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                // The resourceVersion we decided on: if anyone wrote in between, 409.
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..current
                    .as_ref()
                    .map(|l| l.metadata.clone())
                    .unwrap_or_default()
            },
            spec: Some(next_spec(spec, &self.identity, now)),
        };
        let written = match &current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following {
                expires_in: RETRY_INTERVAL,
            }),
            Err(e) => Err(err(e)),
        }
    }

    /// Gives the lease up (holder cleared) so another replica need not wait it out.
    pub async fn release(&self) -> Result<()> {
        let err = |source| Error::Api {
            name: self.name.clone(),
            source,
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(err)? else {
            return Ok(());
        };
        if lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            != Some(self.identity.as_str())
        {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Runs `work()` whenever this candidate leads, for as long as it leads. When a
    /// renewal fails or finds the lease taken, the work's future is dropped and the
    /// candidate waits to lead again. Returns only if the work itself returns.
    pub async fn run<F, Fut, T>(&self, mut work: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            // Follow until we lead.
            loop {
                let wait = match self.attempt().await {
                    Ok(Attempt::Leading) => break,
                    // Look again at the latest when the lease expires, so a dead
                    // leader is replaced as soon as its lease lapses, not up to one
                    // retry interval later.
                    Ok(Attempt::Following { expires_in }) => {
                        RETRY_INTERVAL.min(expires_in + Duration::from_millis(10))
                    }
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "leader election: lease not readable");
                        RETRY_INTERVAL
                    }
                };
                tokio::time::sleep(wait).await;
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            let led_since = tokio::time::Instant::now();
            let work_fut = work();
            tokio::pin!(work_fut);
            let mut last_renewal = led_since;
            let mut ticker = tokio::time::interval_at(led_since + RENEW_INTERVAL, RENEW_INTERVAL);
            loop {
                tokio::select! {
                    out = &mut work_fut => return out,
                    _ = ticker.tick() => {}
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!(lease = %self.name, "lost leadership: the lease was taken");
                        break;
                    }
                    // Transient: keep leading while the lease we last wrote is still
                    // valid, with one renew interval of margin (15 s - 5 s = 10 s).
                    Err(e) if last_renewal.elapsed() < LEASE_DURATION - RENEW_INTERVAL => {
                        tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed; retrying");
                    }
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "lost leadership: could not renew in time");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed_at))),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        assert_eq!(decide(None, "me", at(0)), Decision::Acquire);
    }

    #[test]
    fn a_lease_without_holder_is_acquired() {
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by("x", 0)
        };
        assert_eq!(decide(Some(&spec), "me", at(1)), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_expired() {
        assert_eq!(
            decide(Some(&held_by("me", 0)), "me", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn anothers_fresh_lease_is_followed_until_it_expires() {
        let cases = [
            ("renewed_just_now", 0, 15_000),
            ("renewed_10s_ago", 10, 5_000),
            ("one_ms_before_expiry", 14, 1_000),
        ];
        for (name, now, remaining_ms) in cases {
            assert_eq!(
                decide(Some(&held_by("other", 0)), "me", at(now)),
                Decision::Follow {
                    holder: "other".into(),
                    remaining_ms
                },
                "{name}"
            );
        }
    }

    #[test]
    fn anothers_expired_lease_is_acquired() {
        assert_eq!(
            decide(Some(&held_by("other", 0)), "me", at(15)),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&held_by("other", 0)), "me", at(60)),
            Decision::Acquire
        );
    }

    #[test]
    fn a_lease_never_renewed_is_acquired() {
        let spec = LeaseSpec {
            renew_time: None,
            ..held_by("other", 0)
        };
        assert_eq!(decide(Some(&spec), "me", at(0)), Decision::Acquire);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let taken = next_spec(Some(&held_by("other", 0)), "me", at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        let renewed = next_spec(Some(&taken), "me", at(25));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(25))));
    }

    #[test]
    fn the_first_holder_starts_with_zero_transitions() {
        let first = next_spec(None, "me", at(0));
        assert_eq!(
            (first.lease_transitions, first.lease_duration_seconds),
            (Some(0), Some(15))
        );
    }
}
