//! Leases and garbage collection: every multi-step change (import, container create) runs
//! under a short-lived lease so containerd's collector cannot remove half-made content or
//! snapshots; once an image or container references them, the lease is dropped.

use std::collections::HashMap;

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
};

use super::{grpc, Containerd};
use crate::runtime::Result;

impl Containerd {
    /// Runs containerd's garbage collector now and waits for it: deleting a lease with
    /// `sync` collects synchronously. Whatever the GC labels set at import do not keep
    /// alive is gone afterwards, which is what tests use this to prove.
    pub async fn collect_garbage(&self) -> Result<()> {
        let id = self.lease("gc").await?;
        LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteLeaseRequest { id, sync: true }, None))
            .await
            .map_err(grpc("collect garbage"))?;
        Ok(())
    }

    /// Creates a short-lived lease; the caller deletes it once what it protected is
    /// referenced from a root (an image, a container).
    pub(super) async fn lease(&self, purpose: &str) -> Result<String> {
        let id = format!("kybern-{purpose}-{}", unique_suffix());
        let mut labels = HashMap::new();
        // Should the agent die before deleting it, containerd drops the lease after an hour.
        labels.insert("containerd.io/gc.expire".to_string(), expire_in(3600));
        LeasesClient::new(self.channel.clone())
            .create(self.req(
                CreateLeaseRequest {
                    id: id.clone(),
                    labels,
                },
                None,
            ))
            .await
            .map_err(grpc("create lease"))?;
        Ok(id)
    }

    pub(super) async fn drop_lease(&self, id: &str) -> Result<()> {
        LeasesClient::new(self.channel.clone())
            .delete(self.req(
                DeleteLeaseRequest {
                    id: id.to_string(),
                    sync: false,
                },
                None,
            ))
            .await
            .map_err(grpc("delete lease"))?;
        Ok(())
    }
}

/// A suffix that makes lease and ingest names unique across calls and processes.
pub(super) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An RFC 3339 UTC time `secs` from now, the form containerd's `gc.expire` label takes.
fn expire_in(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(now + secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(epoch_secs: u64) -> String {
    let days = (epoch_secs / 86_400) as i64;
    let rem = epoch_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        let cases = [
            ("epoch", 0, "1970-01-01T00:00:00Z"),
            ("leap day", 951_782_400, "2000-02-29T00:00:00Z"),
            ("late in a day", 1_700_000_000, "2023-11-14T22:13:20Z"),
        ];
        for (name, secs, want) in cases {
            assert_eq!(super::rfc3339(secs), want, "{name}");
        }
    }
}
