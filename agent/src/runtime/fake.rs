//! A recording [`Runtime`] for unit tests: keeps images and containers in memory, records
//! every call, and lets a test decide when and how a container exits.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{ContainerConfig, Error, ExitStatus, ImageInfo, Result, Runtime};
use crate::images::oci::read_layout;

/// One call the fake received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ImportImage(Vec<String>),
    Create(String),
    Start(String),
    Kill(String, u32),
    Delete(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited(u32),
}

struct FakeContainer {
    config: ContainerConfig,
    state: watch::Sender<State>,
}

#[derive(Default)]
struct Inner {
    images: BTreeMap<String, ImageInfo>,
    containers: BTreeMap<String, FakeContainer>,
    calls: Vec<Call>,
    next_pid: u32,
}

#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has already failed; keep its data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an image as if it had been imported.
    pub fn add_image(&self, image: ImageInfo) {
        self.lock().images.insert(image.name.clone(), image);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn state(&self, id: &str) -> Option<State> {
        self.lock().containers.get(id).map(|c| *c.state.borrow())
    }

    pub fn config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().containers.get(id).map(|c| c.config.clone())
    }

    /// Makes a running container exit with `code`, waking its waiters.
    pub fn exit(&self, id: &str, code: u32) {
        if let Some(c) = self.lock().containers.get(id) {
            c.state.send_replace(State::Exited(code));
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn import_image(&self, layout_tar: &[u8]) -> Result<Vec<String>> {
        let layout = read_layout(layout_tar)?;
        let mut inner = self.lock();
        let names: Vec<String> = layout.images.iter().map(|i| i.name.clone()).collect();
        for i in layout.images {
            let info = ImageInfo {
                name: i.name.clone(),
                digest: i.manifest.digest,
                config: i.image_config,
            };
            inner.images.insert(i.name, info);
        }
        inner.calls.push(Call::ImportImage(names.clone()));
        Ok(names)
    }

    async fn image(&self, name: &str) -> Result<Option<ImageInfo>> {
        Ok(self.lock().images.get(name).cloned())
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::Create(config.id.clone()));
        if !inner.images.contains_key(&config.image) {
            return Err(Error::ImageNotFound(config.image.clone()));
        }
        let container = FakeContainer {
            config: config.clone(),
            state: watch::Sender::new(State::Created),
        };
        inner
            .containers
            .entry(config.id.clone())
            .or_insert(container);
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<u32> {
        let mut inner = self.lock();
        inner.calls.push(Call::Start(id.to_string()));
        inner.next_pid += 1;
        let pid = 1000 + inner.next_pid;
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        c.state.send_replace(State::Running);
        Ok(pid)
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let mut rx = {
            let inner = self.lock();
            inner
                .containers
                .get(id)
                .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?
                .state
                .subscribe()
        };
        let state = rx
            .wait_for(|s| matches!(s, State::Exited(_)))
            .await
            .map_err(|_| Error::ContainerNotFound(id.to_string()))?;
        let State::Exited(code) = *state else {
            unreachable!("wait_for returned a state it did not wait for")
        };
        Ok(ExitStatus {
            code,
            exited_at: None,
        })
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::Kill(id.to_string(), signal));
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        // A signal ends the process as the kernel reports it: 128 + signal number.
        if *c.state.borrow() == State::Running {
            c.state.send_replace(State::Exited(128 + signal));
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::Delete(id.to_string()));
        inner.containers.remove(id);
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<String>> {
        Ok(self.lock().containers.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::test_images::busybox_image;

    #[tokio::test]
    async fn fake_records_lifecycle_and_reports_signal_exits() {
        let rt = FakeRuntime::new();
        let names = rt
            .import_image(&busybox_image(b"bb").to_layout_tar().unwrap())
            .await
            .unwrap();
        let config = ContainerConfig {
            id: "c1".into(),
            image: names[0].clone(),
            ..Default::default()
        };
        rt.create_container(&config).await.unwrap();
        rt.start("c1").await.unwrap();
        assert_eq!(rt.state("c1"), Some(State::Running));
        rt.kill("c1", 15).await.unwrap();
        assert_eq!(rt.wait("c1").await.unwrap().code, 143);
        rt.delete("c1").await.unwrap();
        assert_eq!(
            rt.calls(),
            vec![
                Call::ImportImage(names),
                Call::Create("c1".into()),
                Call::Start("c1".into()),
                Call::Kill("c1".into(), 15),
                Call::Delete("c1".into()),
            ]
        );
        assert!(rt.list_containers().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn creating_from_a_missing_image_fails_as_not_found() {
        let rt = FakeRuntime::new();
        let err = rt
            .create_container(&ContainerConfig {
                id: "c".into(),
                image: "nope".into(),
                ..Default::default()
            })
            .await;
        assert!(err.is_err_and(|e| e.is_not_found()));
    }
}
