//! The OCI runtime spec (config.json as runc reads it) for a container, built as JSON from a
//! [`ContainerConfig`], with the defaults containerd's own client applies: the usual
//! /proc, /dev, /sys mounts, the default capability set, masked and read-only kernel paths.

use serde_json::{json, Value};

use super::{ContainerConfig, ImageConfig};

/// The type URL containerd expects on a container's spec.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The capabilities a container process gets unless asked otherwise (Docker's and
/// containerd's default set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The argv a container runs, as the kubelet resolves it: `command` replaces the image's
/// entrypoint (and then the image's cmd is dropped), `args` replaces the image's cmd.
pub fn resolve_args(image: &ImageConfig, command: &[String], args: &[String]) -> Vec<String> {
    let entrypoint = if command.is_empty() {
        &image.entrypoint
    } else {
        command
    };
    let cmd = match (command.is_empty(), args.is_empty()) {
        (_, false) => args,
        (true, true) => &image.cmd[..],
        (false, true) => &[],
    };
    entrypoint.iter().chain(cmd).cloned().collect()
}

/// Image env first, then the container's; a later `NAME=` replaces an earlier one in place.
pub fn merge_env(image: &[String], container: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in image.iter().chain(container) {
        let name = kv.split_once('=').map_or(kv.as_str(), |(n, _)| n);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == name)
        {
            Some(existing) => *existing = kv.clone(),
            None => out.push(kv.clone()),
        }
    }
    out
}

/// The runtime spec for `config`; the root filesystem is the shim's `rootfs` mount.
pub fn runtime_spec(config: &ContainerConfig) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &config.netns_path {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });
    let r = &config.resources;
    let mut resources = json!({ "devices": [{"allow": false, "access": "rwm"}] });
    if let Some(limit) = r.memory_limit_bytes {
        resources["memory"] = json!({ "limit": limit });
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = r.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = r.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = r.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let cwd = if config.cwd.is_empty() {
        "/"
    } else {
        &config.cwd
    };
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": config.args,
            "env": config.env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true,
        },
        "root": { "path": "rootfs", "readonly": false },
        "mounts": default_mounts(),
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": config.cgroup_path,
            "resources": resources,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if let Some(hostname) = &config.hostname {
        spec["hostname"] = json!(hostname);
    }
    spec
}

fn default_mounts() -> Value {
    json!([
        { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
        { "destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Resources;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_resolve_as_the_kubelet_does() {
        let image = ImageConfig {
            entrypoint: strings(&["/ep"]),
            cmd: strings(&["c1"]),
            ..Default::default()
        };
        let cases = [
            ("image defaults", vec![], vec![], vec!["/ep", "c1"]),
            ("args replace cmd", vec![], vec!["a"], vec!["/ep", "a"]),
            ("command drops image cmd", vec!["/x"], vec![], vec!["/x"]),
            ("command and args", vec!["/x"], vec!["a"], vec!["/x", "a"]),
        ];
        for (name, command, args, want) in cases {
            let got = resolve_args(&image, &strings(&command), &strings(&args));
            assert_eq!(got, strings(&want), "{name}");
        }
    }

    #[test]
    fn container_env_overrides_image_env_in_place() {
        let got = merge_env(
            &strings(&["PATH=/bin", "A=1"]),
            &strings(&["B=2", "PATH=/usr/bin"]),
        );
        assert_eq!(got, strings(&["PATH=/usr/bin", "A=1", "B=2"]));
    }

    #[test]
    fn spec_joins_the_given_network_namespace_and_sets_limits() {
        let config = ContainerConfig {
            id: "c".into(),
            args: strings(&["sh"]),
            netns_path: Some("/var/run/netns/pod".into()),
            cgroup_path: "/kybern/pod/c".into(),
            hostname: Some("pod".into()),
            resources: Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_shares: Some(512),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
            },
            ..Default::default()
        };
        let spec = runtime_spec(&config);
        let net = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert_eq!(net["path"], "/var/run/netns/pod");
        assert_eq!(spec["linux"]["cgroupsPath"], "/kybern/pod/c");
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(
            spec["linux"]["resources"]["cpu"],
            json!({"shares": 512, "quota": 50_000, "period": 100_000})
        );
        assert_eq!(spec["hostname"], "pod");
        assert_eq!(spec["process"]["cwd"], "/", "an empty working dir means /");
    }

    #[test]
    fn spec_without_netns_or_limits_gets_a_new_network_namespace_and_no_limits() {
        let spec = runtime_spec(&ContainerConfig {
            id: "c".into(),
            ..Default::default()
        });
        let net = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert!(net.get("path").is_none());
        assert!(spec["linux"]["resources"].get("memory").is_none());
        assert!(spec["linux"]["resources"].get("cpu").is_none());
    }
}
