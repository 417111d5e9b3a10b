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
    let caps = capabilities(config);
    let join = |kind: &str, path: &Option<std::path::PathBuf>| match path {
        Some(path) => json!({"type": kind, "path": path}),
        None => json!({"type": kind}),
    };
    let namespaces = vec![
        join("pid", &config.pid_ns_path),
        join("ipc", &config.ipc_ns_path),
        join("uts", &config.uts_ns_path),
        json!({"type": "mount"}),
        join("network", &config.netns_path),
    ];
    let r = &config.resources;
    let mut resources = json!({ "devices": [{"allow": config.privileged, "access": "rwm"}] });
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
    let user = match &config.user {
        Some(u) => json!({ "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids }),
        None => json!({ "uid": 0, "gid": 0 }),
    };
    let mut mounts = default_mounts();
    if let Value::Array(list) = &mut mounts {
        for m in &config.mounts {
            let mode = if m.readonly { "ro" } else { "rw" };
            list.push(json!({
                "destination": m.destination,
                "type": "bind",
                "source": m.source,
                "options": ["rbind", "rprivate", mode],
            }));
        }
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": config.cgroup_path,
        "resources": resources,
    });
    if !config.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": config.tty,
            "user": user,
            "args": config.args,
            "env": config.env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile_limit(), "soft": nofile_limit() }],
            "noNewPrivileges": config.no_new_privileges,
        },
        "root": { "path": "rootfs", "readonly": config.readonly_rootfs },
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(hostname) = &config.hostname {
        spec["hostname"] = json!(hostname);
    }
    spec
}

/// Every capability the kernel knows, which a privileged container gets.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

/// The process's capability set: everything when privileged, otherwise the default set with
/// `cap_drop` removed (all of it for "ALL") and `cap_add` added ("ALL" adds everything), as
/// the kubelet asks runtimes to. Names are accepted with or without the `CAP_` prefix.
fn capabilities(config: &ContainerConfig) -> Vec<String> {
    if config.privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let norm = |c: &String| {
        let c = c.to_ascii_uppercase();
        if c == "ALL" || c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let drop: Vec<String> = config.cap_drop.iter().map(norm).collect();
    let add: Vec<String> = config.cap_add.iter().map(norm).collect();
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    let added: Vec<String> = if add.iter().any(|c| c == "ALL") {
        ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    } else {
        add
    };
    for c in added {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps
}

/// The open-files limit containers get: 1048576, or the hard limit this process has when
/// that is lower, since runc cannot raise it past the hard limit without CAP_SYS_RESOURCE
/// (containerd, started by or beside the agent, shares its limits).
fn nofile_limit() -> u64 {
    const WANTED: u64 = 1_048_576;
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(4)?.parse::<u64>().ok()
        })
        .map_or(WANTED, |hard| hard.min(WANTED))
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
    fn capabilities_follow_add_drop_and_privileged() {
        let caps = |add: &[&str], drop: &[&str], privileged: bool| {
            capabilities(&ContainerConfig {
                cap_add: strings(add),
                cap_drop: strings(drop),
                privileged,
                ..Default::default()
            })
        };
        let default = caps(&[], &[], false);
        assert_eq!(default.len(), DEFAULT_CAPABILITIES.len(), "default set");
        assert_eq!(caps(&[], &["ALL"], false), Vec::<String>::new(), "drop ALL");
        assert_eq!(
            caps(&["NET_ADMIN"], &["ALL"], false),
            strings(&["CAP_NET_ADMIN"]),
            "drop ALL then add one, without the CAP_ prefix"
        );
        assert!(!caps(&[], &["CAP_CHOWN"], false).contains(&"CAP_CHOWN".to_string()));
        assert_eq!(
            caps(&[], &["ALL"], true).len(),
            ALL_CAPABILITIES.len(),
            "privileged"
        );
    }

    #[test]
    fn spec_carries_user_mounts_namespaces_and_readonly_root() {
        let spec = runtime_spec(&ContainerConfig {
            id: "c".into(),
            ipc_ns_path: Some("/run/kybern/ns/ipc".into()),
            uts_ns_path: Some("/run/kybern/ns/uts".into()),
            pid_ns_path: Some("/proc/42/ns/pid".into()),
            mounts: vec![crate::runtime::Mount {
                destination: "/etc/config".into(),
                source: "/var/lib/kybern/pods/u/volumes/cfg".into(),
                readonly: true,
            }],
            user: Some(crate::runtime::User {
                uid: 1000,
                gid: 3000,
                additional_gids: vec![2000],
            }),
            readonly_rootfs: true,
            no_new_privileges: true,
            ..Default::default()
        });
        let ns = |kind: &str| {
            spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == kind)
                .unwrap()
                .clone()
        };
        assert_eq!(ns("ipc")["path"], "/run/kybern/ns/ipc");
        assert_eq!(ns("uts")["path"], "/run/kybern/ns/uts");
        assert_eq!(ns("pid")["path"], "/proc/42/ns/pid");
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 3000, "additionalGids": [2000]})
        );
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        let last = spec["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["destination"], "/etc/config");
        assert_eq!(last["options"], json!(["rbind", "rprivate", "ro"]));
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
