//! The files the kubelet manages inside every pod: /etc/hosts, /etc/resolv.conf and
//! /etc/hostname, written once per pod and bind-mounted into each container.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// The cluster's DNS settings (`--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    pub servers: Vec<String>,
    pub domain: String,
    /// The host's resolv.conf: what pods with dnsPolicy Default get.
    pub resolv_conf: std::path::PathBuf,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            servers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

/// The pod's hostname: spec.hostname, else its name, cut to 63 characters as upstream.
pub fn hostname(pod: &Pod) -> String {
    let spec_hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let name = spec_hostname.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The pod's /etc/hosts: localhost lines, the pod's own address (with its fully qualified
/// name when it has a subdomain), then hostAliases.
pub fn hosts(pod: &Pod, pod_ip: &str, dns: &ClusterDns) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            out.push_str(&format!(
                "{pod_ip}\t{host}.{sub}.{ns}.svc.{}\t{host}\n",
                dns.domain
            ));
        }
        None => out.push_str(&format!("{pod_ip}\t{host}\n")),
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

/// The pod's /etc/resolv.conf for its dnsPolicy: ClusterFirst (the default) points at the
/// cluster DNS with the namespace's search path; Default (and ClusterFirst on the host
/// network) uses the host's; None only dnsConfig. dnsConfig's servers, searches and options
/// are merged in, as upstream.
pub fn resolv_conf(pod: &Pod, dns: &ClusterDns, host_resolv: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        (vec![], vec![], vec![]);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        servers = dns.servers.clone();
        searches = vec![
            format!("{ns}.svc.{}", dns.domain),
            format!("svc.{}", dns.domain),
            dns.domain.clone(),
        ];
        searches.extend(parse_host(host_resolv).1);
        options = vec!["ndots:5".into()];
    } else if policy != "None" {
        let (s, search, o) = parse_host(host_resolv);
        (servers, searches, options) = (s, search, o);
    }
    if let Some(cfg) = spec.dns_config {
        for s in cfg.nameservers.unwrap_or_default() {
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
        for s in cfg.searches.unwrap_or_default() {
            if !searches.contains(&s) {
                searches.push(s);
            }
        }
        for o in cfg.options.unwrap_or_default() {
            let text = match o.value {
                Some(v) => format!("{}:{v}", o.name.unwrap_or_default()),
                None => o.name.unwrap_or_default(),
            };
            let key = text.split(':').next().unwrap_or_default().to_string();
            options.retain(|x| x.split(':').next() != Some(key.as_str()));
            options.push(text);
        }
    }
    // glibc reads at most 32 search domains (upstream's limit).
    searches.truncate(32);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Nameservers, search domains and options of a resolv.conf. Loopback nameservers are
/// dropped: inside a pod they would point at the pod itself.
fn parse_host(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (vec![], vec![], vec![]);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words
                    .next()
                    .filter(|s| !s.starts_with("127.") && *s != "::1")
                {
                    servers.push(s.to_string());
                }
            }
            Some("search") | Some("domain") => searches.extend(words.map(str::to_string)),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, searches, options)
}

/// Writes the three files into `dir` (the pod's directory) atomically.
pub fn write_all(dir: &Path, pod: &Pod, pod_ip: &str, dns: &ClusterDns) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let host_resolv = std::fs::read_to_string(&dns.resolv_conf).unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let hosts_text = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts(pod, pod_ip, dns)
    };
    let host = if host_network {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        hostname(pod)
    };
    for (name, text) in [
        ("etc-hosts", hosts_text),
        ("resolv.conf", resolv_conf(pod, dns, &host_resolv)),
        ("hostname", format!("{host}\n")),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn pod(spec: PodSpec) -> Pod {
        let mut p = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p
    }

    #[test]
    fn hosts_name_the_pod_and_its_subdomain_and_aliases() {
        let plain = hosts(
            &pod(PodSpec::default()),
            "10.42.0.7",
            &ClusterDns::default(),
        );
        assert!(plain.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(plain.ends_with("10.42.0.7\tweb-0\n"), "{plain}");
        let sub = hosts(
            &pod(PodSpec {
                subdomain: Some("web".into()),
                host_aliases: Some(vec![HostAlias {
                    ip: "1.2.3.4".into(),
                    hostnames: Some(vec!["a".into(), "b".into()]),
                }]),
                ..Default::default()
            }),
            "10.42.0.7",
            &ClusterDns::default(),
        );
        assert!(
            sub.contains("10.42.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n"),
            "{sub}"
        );
        assert!(
            sub.ends_with("# Entries added by HostAliases.\n1.2.3.4\ta\tb\n"),
            "{sub}"
        );
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let host = "nameserver 127.0.0.53\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n";
        let dns = ClusterDns::default();
        let cases = [
            (
                "ClusterFirst",
                PodSpec::default(),
                "search shop.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                "host network falls back to the host's",
                PodSpec { host_network: Some(true), ..Default::default() },
                "search lan\nnameserver 192.168.1.1\noptions edns0\n",
            ),
            (
                "ClusterFirstWithHostNet",
                PodSpec {
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    ..Default::default()
                },
                "search shop.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                "None with dnsConfig",
                PodSpec {
                    dns_policy: Some("None".into()),
                    dns_config: Some(PodDNSConfig {
                        nameservers: Some(vec!["9.9.9.9".into()]),
                        searches: Some(vec!["x.y".into()]),
                        options: Some(vec![PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) }]),
                    }),
                    ..Default::default()
                },
                "search x.y\nnameserver 9.9.9.9\noptions ndots:2\n",
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(resolv_conf(&pod(spec), &dns, host), want, "{name}");
        }
    }

    #[test]
    fn hostname_prefers_spec_hostname_and_is_cut_to_63() {
        assert_eq!(
            hostname(&pod(PodSpec {
                hostname: Some("h".into()),
                ..Default::default()
            })),
            "h"
        );
        let mut long = pod(PodSpec::default());
        long.metadata.name = Some(format!("{}-x", "a".repeat(62)));
        assert_eq!(hostname(&long), "a".repeat(62));
    }
}
