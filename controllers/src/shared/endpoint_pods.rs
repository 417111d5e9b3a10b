//! What the Endpoints and EndpointSlice controllers both ask of a pod: whether a
//! Service selects it, whether it belongs in endpoints at all, which port a service port
//! reaches on it, and whether its hostname is published (upstream
//! pkg/controller/util/endpoint and pkg/api/v1/pod FindPort).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

/// The Service's selector when the controllers manage its endpoints: `None` for
/// services without one (their Endpoints are written by hand, like `kubernetes`) and
/// for ExternalName services, which have no endpoints.
pub fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `svc` selects `pod`: same namespace and every selector label present.
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = managed_selector(svc) else {
        return false;
    };
    let labels = pod.labels();
    svc.namespace() == pod.namespace() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods of `ns` a Service selects, in name order.
pub fn selected_pods(svc: &Service, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    let mut selected: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| selects(svc, p))
        .collect();
    selected.sort_by_key(|p| p.name_any());
    selected
}

/// The Services a pod event concerns: those selecting it now, and those whose
/// endpoints already name it (`listed`), so a pod whose labels changed leaves them.
pub fn services_for_pod(
    services: &Store<Service>,
    pod: &Pod,
    listed: impl Fn(&Service) -> bool,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace();
    services
        .state()
        .iter()
        .filter(|s| s.namespace() == ns && managed_selector(s).is_some())
        .filter(|s| selects(s, pod) || listed(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Upstream ShouldPodBeInEndpoints: a pod with an address that has not finished;
/// terminating pods only when `include_terminating`.
pub fn belongs_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if status.pod_ip.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// The pod's IPv4 address, the only family these controllers publish.
pub fn ipv4(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    ip.parse::<std::net::Ipv4Addr>()
        .ok()
        .map(|_| ip.to_string())
}

/// The port `svc_port` reaches on `pod` (upstream FindPort): a numeric targetPort as is
/// (the port itself when unset), a named one from the container port of that name and
/// protocol; `None` when the pod has no such port, and the pod is then left out of
/// that port's endpoints.
pub fn find_port(pod: &Pod, svc_port: &ServicePort) -> Option<i32> {
    let protocol = svc_port.protocol.as_deref().unwrap_or("TCP");
    match &svc_port.target_port {
        None => Some(svc_port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            // Sidecars (restartable init containers) serve ports like containers do.
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The hostname published for the pod: its spec.hostname when its subdomain names the
/// Service (upstream ShouldSetHostname), which is what gives headless services' pods
/// their DNS names.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.namespace() == svc.namespace())
    .then(|| hostname.to_string())
}

pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The labels of a Service's endpoints: the Service's own, plus
/// `service.kubernetes.io/headless` for a headless one.
pub fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(HEADLESS_LABEL);
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! `pod("a").ip("10.42.0.5").ready().port("http", 8080)` and `service("web")`.
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    pub(crate) fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    pub(crate) fn service(name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub(crate) trait PodFixture {
        fn ip(self, ip: &str) -> Self;
        fn ready(self) -> Self;
        fn on_node(self, node: &str) -> Self;
        fn port(self, name: &str, port: i32) -> Self;
        fn terminating(self) -> Self;
        fn phase(self, phase: &str) -> Self;
        fn host(self, hostname: &str, subdomain: &str) -> Self;
    }

    impl PodFixture for Pod {
        fn ip(mut self, ip: &str) -> Self {
            self.status.get_or_insert_default().pod_ip = Some(ip.into());
            self
        }
        fn ready(mut self) -> Self {
            self.status.get_or_insert_default().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]);
            self
        }
        fn on_node(mut self, node: &str) -> Self {
            self.spec.get_or_insert_default().node_name = Some(node.into());
            self
        }
        fn port(mut self, name: &str, port: i32) -> Self {
            let c = &mut self.spec.get_or_insert_default().containers[0];
            c.ports.get_or_insert_default().push(ContainerPort {
                name: Some(name.into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..Default::default()
            });
            self
        }
        fn terminating(mut self) -> Self {
            self.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
            self
        }
        fn phase(mut self, phase: &str) -> Self {
            self.status.get_or_insert_default().phase = Some(phase.into());
            self
        }
        fn host(mut self, hostname: &str, subdomain: &str) -> Self {
            let spec = self.spec.get_or_insert_default();
            spec.hostname = Some(hostname.into());
            spec.subdomain = Some(subdomain.into());
            self
        }
    }

    pub(crate) fn svc_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    pub(crate) trait ServiceFixture {
        fn ports(self, ports: Vec<ServicePort>) -> Self;
        fn headless(self) -> Self;
        fn publish_not_ready(self) -> Self;
        fn no_selector(self) -> Self;
    }

    impl ServiceFixture for Service {
        fn ports(mut self, ports: Vec<ServicePort>) -> Self {
            self.spec.get_or_insert_default().ports = Some(ports);
            self
        }
        fn headless(mut self) -> Self {
            self.spec.get_or_insert_default().cluster_ip = Some("None".into());
            self
        }
        fn publish_not_ready(mut self) -> Self {
            self.spec
                .get_or_insert_default()
                .publish_not_ready_addresses = Some(true);
            self
        }
        fn no_selector(mut self) -> Self {
            self.spec.get_or_insert_default().selector = None;
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn service_ports_resolve_on_each_pod_like_find_port() {
        let named = |n: &str| IntOrString::String(n.into());
        let with_http = pod("a").port("http", 8080);
        let cases = [
            (
                "numeric target port",
                svc_port("p", 80, IntOrString::Int(9090)),
                with_http.clone(),
                Some(9090),
            ),
            (
                "unset target port is the port",
                ServicePort {
                    target_port: None,
                    ..svc_port("p", 80, IntOrString::Int(0))
                },
                with_http.clone(),
                Some(80),
            ),
            (
                "named port found",
                svc_port("p", 80, named("http")),
                with_http.clone(),
                Some(8080),
            ),
            (
                "named port missing on the pod",
                svc_port("p", 80, named("metrics")),
                with_http.clone(),
                None,
            ),
            (
                "named port of another protocol",
                ServicePort {
                    protocol: Some("UDP".into()),
                    ..svc_port("p", 80, named("http"))
                },
                with_http,
                None,
            ),
        ];
        for (name, port, pod, want) in cases {
            assert_eq!(find_port(&pod, &port), want, "{name}");
        }
    }

    #[test]
    fn pods_belong_in_endpoints_like_upstream() {
        let cases = [
            (
                "running with an address",
                pod("a").ip("10.42.0.1"),
                false,
                true,
            ),
            ("no address yet", pod("a"), false, false),
            (
                "terminating",
                pod("a").ip("10.42.0.1").terminating(),
                false,
                false,
            ),
            (
                "terminating when asked for",
                pod("a").ip("10.42.0.1").terminating(),
                true,
                true,
            ),
            (
                "succeeded",
                pod("a").ip("10.42.0.1").phase("Succeeded"),
                true,
                false,
            ),
            (
                "failed",
                pod("a").ip("10.42.0.1").phase("Failed"),
                true,
                false,
            ),
        ];
        for (name, pod, include_terminating, want) in cases {
            assert_eq!(
                belongs_in_endpoints(&pod, include_terminating),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn selection_needs_a_selector_and_every_label() {
        let cases = [
            ("matching labels", service("web"), pod("a"), true),
            ("no selector", service("web").no_selector(), pod("a"), false),
            (
                "another namespace",
                service("web"),
                Pod {
                    metadata: kube::api::ObjectMeta {
                        namespace: Some("other".into()),
                        ..pod("a").metadata
                    },
                    ..pod("a")
                },
                false,
            ),
            (
                "label missing",
                service("web"),
                Pod {
                    metadata: kube::api::ObjectMeta {
                        labels: None,
                        ..pod("a").metadata
                    },
                    ..pod("a")
                },
                false,
            ),
        ];
        for (name, svc, pod, want) in cases {
            assert_eq!(selects(&svc, &pod), want, "{name}");
        }
    }

    #[test]
    fn hostnames_are_published_when_the_subdomain_names_the_service() {
        assert_eq!(
            hostname(&pod("a").host("a", "web"), &service("web")).as_deref(),
            Some("a")
        );
        assert_eq!(
            hostname(&pod("a").host("a", "other"), &service("web")),
            None
        );
        assert_eq!(hostname(&pod("a"), &service("web")), None);
    }
}
