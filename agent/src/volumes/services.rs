//! The Docker-links style variables the kubelet gives every container for services
//! (`enableServiceLinks`), and always for the `kubernetes` service in `default`, which is how
//! in-cluster clients find the apiserver (`KUBERNETES_SERVICE_HOST`, `..._PORT`).

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::Api;

use super::objects::api_message;
use super::VolumeHost;

/// Variables for `services`, in upstream's shape: for a service `redis-primary` on
/// 10.43.0.11 with port 6379/TCP named `db`:
/// `REDIS_PRIMARY_SERVICE_HOST=10.43.0.11`, `REDIS_PRIMARY_SERVICE_PORT=6379`,
/// `REDIS_PRIMARY_SERVICE_PORT_DB=6379`, `REDIS_PRIMARY_PORT=tcp://10.43.0.11:6379`,
/// `REDIS_PRIMARY_PORT_6379_TCP=tcp://10.43.0.11:6379`, `..._TCP_PROTO=tcp`,
/// `..._TCP_PORT=6379`, `..._TCP_ADDR=10.43.0.11`. Headless services get none.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = service
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_uppercase().replace('-', "_");
                out.push((
                    format!("{name}_SERVICE_PORT_{port_name}"),
                    port.port.to_string(),
                ));
            }
        }
        let host_port = |port: i32| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{}", protocol.to_lowercase(), host_port(port.port));
            if i == 0 {
                out.push((format!("{name}_PORT"), url.clone()));
            }
            let prefix = format!("{name}_PORT_{}_{}", port.port, protocol.to_uppercase());
            out.push((prefix.clone(), url));
            out.push((format!("{prefix}_PROTO"), protocol.to_lowercase()));
            out.push((format!("{prefix}_PORT"), port.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The services whose variables `pod` gets: `kubernetes` in `default` always, and every
/// service of the pod's namespace unless `enableServiceLinks` is false (a same-named service
/// of the pod's namespace wins).
pub async fn services_for(host: &VolumeHost, pod: &Pod) -> Result<Vec<Service>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services = Vec::new();
    if links {
        let api: Api<Service> = Api::namespaced(host.client.clone(), namespace);
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            format!(
                "failed to list services of {namespace}: {}",
                api_message(&e)
            )
        })?;
        services.extend(list.items);
    }
    let has_kubernetes = services
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some("kubernetes"));
    if !has_kubernetes {
        let api: Api<Service> = Api::namespaced(host.client.clone(), "default");
        let master = api.get_opt("kubernetes").await.map_err(|e| {
            format!(
                "failed to get service default/kubernetes: {}",
                api_message(&e)
            )
        })?;
        services.extend(master);
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_service_variables_as_upstream() {
        let service = |name: &str, spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap()
        };
        let cases = [
            (
                "two ports, one named",
                service(
                    "redis-primary",
                    json!({ "clusterIP": "10.43.0.11", "ports": [
                        { "name": "db", "port": 6379 }, { "port": 9121, "protocol": "UDP" },
                    ]}),
                ),
                vec![
                    ("REDIS_PRIMARY_SERVICE_HOST", "10.43.0.11"),
                    ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
                    ("REDIS_PRIMARY_SERVICE_PORT_DB", "6379"),
                    ("REDIS_PRIMARY_PORT", "tcp://10.43.0.11:6379"),
                    ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.43.0.11:6379"),
                    ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
                    ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
                    ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.43.0.11"),
                    ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.43.0.11:9121"),
                    ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
                    ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
                    ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.43.0.11"),
                ],
            ),
            (
                "IPv6 addresses are bracketed in URLs",
                service(
                    "v6",
                    json!({ "clusterIP": "fd00::1", "ports": [{ "port": 80 }] }),
                ),
                vec![
                    ("V6_SERVICE_HOST", "fd00::1"),
                    ("V6_SERVICE_PORT", "80"),
                    ("V6_PORT", "tcp://[fd00::1]:80"),
                    ("V6_PORT_80_TCP", "tcp://[fd00::1]:80"),
                    ("V6_PORT_80_TCP_PROTO", "tcp"),
                    ("V6_PORT_80_TCP_PORT", "80"),
                    ("V6_PORT_80_TCP_ADDR", "fd00::1"),
                ],
            ),
            (
                "headless services get nothing",
                service(
                    "db",
                    json!({ "clusterIP": "None", "ports": [{ "port": 5432 }] }),
                ),
                vec![],
            ),
        ];
        for (name, svc, want) in cases {
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(service_env(&[svc]), want, "{name}");
        }
    }
}
