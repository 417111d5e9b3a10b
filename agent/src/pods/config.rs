//! From a pod's container spec to the runtime's [`ContainerConfig`]: argv, environment,
//! working directory, identity, capabilities and cgroup limits, as the kubelet derives them.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements, SecurityContext};

use crate::runtime::spec::{merge_env, resolve_args};
use crate::runtime::{ContainerConfig, ImageConfig, Resources, User};

/// The CFS period the kubelet uses (100 ms), in microseconds.
pub const CPU_PERIOD: u64 = 100_000;
/// cpu.shares for a container without a cpu request (the kernel's minimum useful value).
pub const MIN_SHARES: u64 = 2;

/// A quantity ("500m", "1.5Gi", "2e3") times `scale` (1000 for millicores), rounded up;
/// exact, through the volumes' Quantity arithmetic.
pub fn quantity(q: &str, scale: i128) -> Option<i64> {
    let nanos = crate::volumes::quantity::parse_nanos(q)?;
    i64::try_from(crate::volumes::quantity::ceil_div(
        nanos.checked_mul(scale)?,
        1_000_000_000,
    ))
    .ok()
}

/// cgroup settings from requests and limits: cpu.shares from the cpu request (1024 per
/// core, at least 2), a CFS quota from the cpu limit, the memory limit as is.
pub fn resources(r: Option<&ResourceRequirements>) -> Resources {
    let get = |list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               name: &str,
               scale: i128| {
        list.and_then(|l| l.get(name))
            .and_then(|q| quantity(&q.0, scale))
    };
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    // A limit without a request means a request equal to the limit (the apiserver defaults
    // it; older objects may not have been).
    let milli_request = get(requests, "cpu", 1000).or_else(|| get(limits, "cpu", 1000));
    let shares = milli_request.map_or(MIN_SHARES, |m| ((m as u64) * 1024 / 1000).max(MIN_SHARES));
    let milli_limit = get(limits, "cpu", 1000);
    Resources {
        memory_limit_bytes: get(limits, "memory", 1),
        cpu_shares: Some(shares),
        // The kernel refuses quotas under 1 ms.
        cpu_quota: milli_limit.map(|m| (m * CPU_PERIOD as i64 / 1000).max(1000)),
        cpu_period: milli_limit.map(|_| CPU_PERIOD),
    }
}

/// The process identity: the container's securityContext over the pod's, with fsGroup and
/// supplementalGroups as additional groups. `None` (the image's user, root here) when
/// nothing is set.
pub fn user(pod: &Pod, container: &Container) -> Option<User> {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    let uid = csc.run_as_user.or(psc.run_as_user);
    let gid = csc.run_as_group.or(psc.run_as_group);
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = psc.fs_group {
        groups.insert(0, fs as u32);
    }
    if uid.is_none() && gid.is_none() && groups.is_empty() {
        return None;
    }
    Some(User {
        uid: uid.unwrap_or(0) as u32,
        gid: gid.unwrap_or(0) as u32,
        additional_gids: groups,
    })
}

/// Everything of the config that comes from the spec and the image alone; the caller adds
/// the ID, namespaces, mounts, labels and log path. `env` is the resolved container env.
pub fn base(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    env: Vec<String>,
) -> ContainerConfig {
    let sc: SecurityContext = container.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let readonly_rootfs = sc.read_only_root_filesystem.unwrap_or(false);
    ContainerConfig {
        image: String::new(),
        args: resolve_args(
            image,
            container.command.as_deref().unwrap_or(&[]),
            container.args.as_deref().unwrap_or(&[]),
        ),
        env: merge_env(&image.env, &env),
        cwd: container
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| image.working_dir.clone()),
        user: user(pod, container),
        readonly_rootfs,
        privileged: sc.privileged.unwrap_or(false),
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        resources: resources(container.resources.as_ref()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn reqs(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
        let m = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        ResourceRequirements {
            requests: m(requests),
            limits: m(limits),
            ..Default::default()
        }
    }

    #[test]
    fn requests_and_limits_become_cgroup_settings() {
        let cases = [
            (
                "best effort",
                reqs(&[], &[]),
                Resources {
                    cpu_shares: Some(2),
                    ..Default::default()
                },
            ),
            (
                "half a core requested",
                reqs(&[("cpu", "500m")], &[]),
                Resources {
                    cpu_shares: Some(512),
                    ..Default::default()
                },
            ),
            (
                "limits",
                reqs(&[("cpu", "250m")], &[("cpu", "1"), ("memory", "64Mi")]),
                Resources {
                    memory_limit_bytes: Some(64 << 20),
                    cpu_shares: Some(256),
                    cpu_quota: Some(100_000),
                    cpu_period: Some(100_000),
                },
            ),
            (
                "tiny limit raised to the kernel's minimum quota",
                reqs(&[], &[("cpu", "1m")]),
                Resources {
                    cpu_shares: Some(2),
                    cpu_quota: Some(1000),
                    cpu_period: Some(100_000),
                    ..Default::default()
                },
            ),
        ];
        for (name, r, want) in cases {
            assert_eq!(resources(Some(&r)), want, "{name}");
        }
    }

    #[test]
    fn quantities_parse_with_suffixes() {
        for (q, scale, want) in [
            ("500m", 1000, 500),
            ("1.5", 1000, 1500),
            ("64Mi", 1, 64 << 20),
            ("1G", 1, 1_000_000_000),
            ("2e3", 1, 2000),
        ] {
            assert_eq!(quantity(q, scale), Some(want), "{q}");
        }
        assert_eq!(quantity("12x", 1), None);
    }

    #[test]
    fn identity_merges_pod_and_container_security_contexts() {
        let pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    fs_group: Some(2000),
                    supplemental_groups: Some(vec![4000]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let plain = Container::default();
        assert_eq!(
            user(&pod, &plain),
            Some(User {
                uid: 1000,
                gid: 3000,
                additional_gids: vec![2000, 4000]
            })
        );
        let own = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(7),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(user(&pod, &own).unwrap().uid, 7);
        assert_eq!(user(&Pod::default(), &plain), None);
    }

    #[test]
    fn base_config_resolves_args_env_and_security() {
        let image = ImageConfig {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "echo".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/srv".into(),
        };
        let c = Container {
            args: Some(vec!["-c".into(), "true".into()]),
            security_context: Some(SecurityContext {
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cfg = base(&Pod::default(), &c, &image, vec!["A=1".into()]);
        assert_eq!(cfg.args, vec!["/bin/sh", "-c", "true"]);
        assert_eq!(cfg.env, vec!["PATH=/bin", "A=1"]);
        assert_eq!(cfg.cwd, "/srv");
        assert!(cfg.readonly_rootfs && cfg.no_new_privileges && !cfg.privileged);
        assert_eq!(
            (cfg.cap_add, cfg.cap_drop),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
    }
}
