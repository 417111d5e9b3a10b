//! A recording [`Runtime`] for unit tests: keeps images and containers in memory, records
//! every call, and lets a test decide when and how a container exits.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    ContainerConfig, ContainerSummary, Error, ExecOutput, ExitStatus, ImageInfo, RegistryAuth,
    Result, Runtime, TaskState,
};
use crate::images::oci::read_layout;

/// One call the fake received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ImportImage(Vec<String>),
    Create(String),
    Start(String),
    Kill(String, u32),
    Delete(String),
    Exec(String, Vec<String>),
    /// An interactive exec, with whether it had stdin and a TTY.
    ExecInteractive(String, Vec<String>, bool, bool),
    Pull(String, Option<RegistryAuth>),
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
    pid: u32,
}

#[derive(Default)]
struct Inner {
    images: BTreeMap<String, ImageInfo>,
    containers: BTreeMap<String, FakeContainer>,
    calls: Vec<Call>,
    next_pid: u32,
    /// Images [`Runtime::pull_image`] finds, by reference.
    registry: BTreeMap<String, ImageInfo>,
    exec_results: BTreeMap<(String, Vec<String>), ExecOutput>,
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

    /// Makes `reference` pullable: [`Runtime::pull_image`] then stores `image`.
    pub fn add_registry_image(&self, reference: &str, image: ImageInfo) {
        self.lock().registry.insert(reference.to_string(), image);
    }

    /// What [`Runtime::exec`] of `args` in `id` returns (exit code 0, no output otherwise).
    pub fn set_exec_result(&self, id: &str, args: &[&str], result: ExecOutput) {
        let key = (id.to_string(), args.iter().map(|a| a.to_string()).collect());
        self.lock().exec_results.insert(key, result);
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
            pid: 0,
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
            .get_mut(id)
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        c.pid = pid;
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

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        Ok(self
            .lock()
            .containers
            .iter()
            .map(|(id, c)| ContainerSummary {
                id: id.clone(),
                labels: c.config.labels.clone(),
            })
            .collect())
    }

    async fn task_state(&self, id: &str) -> Result<TaskState> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        let state = *c.state.borrow();
        Ok(match state {
            State::Created => TaskState::Created,
            State::Running => TaskState::Running { pid: c.pid },
            State::Exited(code) => TaskState::Exited(ExitStatus {
                code,
                exited_at: None,
            }),
        })
    }

    async fn exec(
        &self,
        id: &str,
        args: &[String],
        _timeout: std::time::Duration,
    ) -> Result<ExecOutput> {
        let mut inner = self.lock();
        inner.calls.push(Call::Exec(id.to_string(), args.to_vec()));
        let running = inner
            .containers
            .get(id)
            .is_some_and(|c| *c.state.borrow() == State::Running);
        if !running {
            return Err(Error::ContainerNotFound(id.to_string()));
        }
        Ok(inner
            .exec_results
            .get(&(id.to_string(), args.to_vec()))
            .cloned()
            .unwrap_or_default())
    }

    /// Writes the output [`FakeRuntime::set_exec_result`] gave for `args` to stdout, then
    /// echoes stdin to stdout (a `cat`) until the client closes it; exits with that result's
    /// code.
    async fn exec_interactive(
        &self,
        id: &str,
        args: &[String],
        io: crate::stream::ExecIo,
    ) -> Result<u32> {
        let result = {
            let mut inner = self.lock();
            inner.calls.push(Call::ExecInteractive(
                id.to_string(),
                args.to_vec(),
                io.stdin.is_some(),
                io.tty,
            ));
            let running = inner
                .containers
                .get(id)
                .is_some_and(|c| *c.state.borrow() == State::Running);
            if !running {
                return Err(Error::ContainerNotFound(id.to_string()));
            }
            inner
                .exec_results
                .get(&(id.to_string(), args.to_vec()))
                .cloned()
                .unwrap_or_default()
        };
        use tokio::io::AsyncWriteExt;
        let crate::stream::ExecIo {
            stdin, mut stdout, ..
        } = io;
        if let Some(out) = stdout.as_mut() {
            let _ = out.write_all(&result.output).await;
        }
        if let (Some(mut input), Some(out)) = (stdin, stdout.as_mut()) {
            let _ = tokio::io::copy(&mut input, out).await;
        }
        Ok(result.exit_code)
    }

    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let mut inner = self.lock();
        inner
            .calls
            .push(Call::Pull(reference.to_string(), auth.cloned()));
        inner
            .registry
            .get(reference)
            .cloned()
            .ok_or_else(|| Error::Pull(format!("{reference}: not found")))
            .inspect(|image| {
                inner.images.insert(image.name.clone(), image.clone());
            })
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
