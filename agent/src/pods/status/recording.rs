//! A recording [`StatusSink`] for unit tests: every status write, event and pod deletion in
//! order, and a way to wait until one arrives.

use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::ResourceExt;
use tokio::sync::watch;

use super::StatusSink;

/// One thing the worker told the API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sent {
    Status {
        pod: String,
        uid: Option<String>,
        status: Box<PodStatus>,
    },
    Event {
        pod: String,
        field_path: Option<String>,
        type_: String,
        reason: String,
        message: String,
    },
    Delete {
        pod: String,
        uid: String,
    },
}

pub(crate) struct RecordingSink {
    sent: Mutex<Vec<Sent>>,
    next_rv: Mutex<u64>,
    /// Bumped on every call, so tests can wait for one.
    changed: watch::Sender<usize>,
}

impl RecordingSink {
    pub(crate) fn new() -> Self {
        RecordingSink {
            sent: Mutex::new(Vec::new()),
            next_rv: Mutex::new(1),
            changed: watch::Sender::new(0),
        }
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The resourceVersion the next status write reports (then one more per write).
    pub(crate) fn set_next_resource_version(&self, rv: u64) {
        *self.next_rv.lock().unwrap_or_else(|p| p.into_inner()) = rv;
    }

    /// The status writes, in order.
    pub(crate) fn statuses(&self) -> Vec<PodStatus> {
        self.sent()
            .into_iter()
            .filter_map(|s| match s {
                Sent::Status { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }

    /// The reasons of the events, in order.
    pub(crate) fn event_reasons(&self) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter_map(|s| match s {
                Sent::Event { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// Waits until `done` holds for what was sent so far.
    pub(crate) async fn wait_for(&self, done: impl Fn(&[Sent]) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if done(&self.sent()) {
                return;
            }
            rx.changed().await.expect("the sink outlives its waiters");
        }
    }

    fn push(&self, s: Sent) {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        self.changed.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl StatusSink for RecordingSink {
    async fn write_status(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        status: &PodStatus,
    ) -> Result<u64, kube::Error> {
        let rv = {
            let mut next = self.next_rv.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next - 1
        };
        self.push(Sent::Status {
            pod: pod.name_any(),
            uid: uid.map(str::to_string),
            status: Box::new(status.clone()),
        });
        Ok(rv)
    }

    async fn event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        self.push(Sent::Event {
            pod: pod.name_any(),
            field_path,
            type_: type_.into(),
            reason: reason.into(),
            message: message.into(),
        });
    }

    async fn delete_pod(&self, pod: &Pod, uid: &str) -> Result<(), kube::Error> {
        self.push(Sent::Delete {
            pod: pod.name_any(),
            uid: uid.into(),
        });
        Ok(())
    }
}
