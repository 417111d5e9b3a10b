//! Fixture builders for scheduler tests that read like the sentence they set up:
//! `Node::test("n1").cpu("4").taint("k", "v", "NoSchedule")`,
//! `Pod::test("p").requests("500m", "1Gi").node_selector("disk", "ssd")`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeCondition,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod,
    PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec, PreferredSchedulingTerm,
    ResourceRequirements, Taint, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub trait NodeFixture: Sized {
    /// A Ready node with 4 cpu, 8Gi memory, 100Gi ephemeral storage and 110 pods.
    fn test(name: &str) -> Self;
    fn cpu(self, q: &str) -> Self;
    fn memory(self, q: &str) -> Self;
    fn pods(self, n: u32) -> Self;
    fn allocatable(self, name: &str, q: &str) -> Self;
    fn label(self, k: &str, v: &str) -> Self;
    fn taint(self, key: &str, value: &str, effect: &str) -> Self;
    fn unschedulable(self) -> Self;
    fn not_ready(self) -> Self;
    fn image(self, name: &str, bytes: i64) -> Self;
}

impl NodeFixture for Node {
    fn test(name: &str) -> Node {
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("ephemeral-storage", "100Gi"),
            ("pods", "110"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                capacity: Some(alloc.clone()),
                allocatable: Some(alloc),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }
    fn cpu(self, q: &str) -> Self {
        self.allocatable("cpu", q)
    }
    fn memory(self, q: &str) -> Self {
        self.allocatable("memory", q)
    }
    fn pods(self, n: u32) -> Self {
        self.allocatable("pods", &n.to_string())
    }
    fn allocatable(mut self, name: &str, q: &str) -> Self {
        let st = self.status.get_or_insert_with(Default::default);
        for list in [&mut st.allocatable, &mut st.capacity] {
            list.get_or_insert_with(Default::default)
                .insert(name.into(), Quantity(q.into()));
        }
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }
    fn unschedulable(mut self) -> Self {
        self.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        self
    }
    fn not_ready(mut self) -> Self {
        let st = self.status.get_or_insert_with(Default::default);
        st.conditions = Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..Default::default()
        }]);
        self
    }
    fn image(mut self, name: &str, bytes: i64) -> Self {
        let st = self.status.get_or_insert_with(Default::default);
        st.images.get_or_insert_with(Vec::new).push(ContainerImage {
            names: Some(vec![name.into()]),
            size_bytes: Some(bytes),
        });
        self
    }
}

pub trait PodFixture: Sized {
    /// A pending pod in `default` with one container `c` (image `pause`) and no requests.
    fn test(name: &str) -> Self;
    fn requests(self, cpu: &str, memory: &str) -> Self;
    fn request(self, name: &str, q: &str) -> Self;
    fn init_requests(self, cpu: &str, memory: &str) -> Self;
    fn label(self, k: &str, v: &str) -> Self;
    fn on_node(self, node: &str) -> Self;
    fn priority(self, p: i32) -> Self;
    /// status.startTime, in seconds since the epoch.
    fn started_at(self, seconds: i64) -> Self;
    fn node_selector(self, k: &str, v: &str) -> Self;
    /// Required node affinity: one term with one requirement.
    fn node_affinity(self, key: &str, op: &str, values: &[&str]) -> Self;
    fn preferred_node_affinity(self, weight: i32, key: &str, op: &str, values: &[&str]) -> Self;
    fn toleration(self, key: &str, op: &str, value: &str, effect: &str) -> Self;
    fn host_port(self, port: i32, protocol: &str, host_ip: &str) -> Self;
    fn image(self, image: &str) -> Self;
    /// Required pod affinity to pods labelled k=v in the same `topology` domain.
    fn affinity_to(self, k: &str, v: &str, topology: &str) -> Self;
    fn anti_affinity_to(self, k: &str, v: &str, topology: &str) -> Self;
    fn preferred_affinity_to(self, weight: i32, k: &str, v: &str, topology: &str) -> Self;
    fn preferred_anti_affinity_to(self, weight: i32, k: &str, v: &str, topology: &str) -> Self;
    /// A topology spread constraint over pods labelled k=v.
    fn spread(self, max_skew: i32, topology: &str, when: &str, k: &str, v: &str) -> Self;
}

/// A toleration; an empty argument leaves its field unset.
pub fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(op),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

fn spec(pod: &mut Pod) -> &mut PodSpec {
    pod.spec.get_or_insert_with(Default::default)
}

fn affinity(pod: &mut Pod) -> &mut Affinity {
    spec(pod).affinity.get_or_insert_with(Default::default)
}

fn selector(k: &str, v: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        match_expressions: None,
    })
}

fn term(k: &str, v: &str, topology: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: selector(k, v),
        topology_key: topology.into(),
        ..Default::default()
    }
}

fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }]),
        match_fields: None,
    }
}

impl PodFixture for Pod {
    fn test(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("pause".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }
    fn requests(self, cpu: &str, memory: &str) -> Self {
        self.request("cpu", cpu).request("memory", memory)
    }
    fn request(mut self, name: &str, q: &str) -> Self {
        let c = &mut spec(&mut self).containers[0];
        c.resources
            .get_or_insert_with(ResourceRequirements::default)
            .requests
            .get_or_insert_with(Default::default)
            .insert(name.into(), Quantity(q.into()));
        self
    }
    fn init_requests(mut self, cpu: &str, memory: &str) -> Self {
        let requests = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        spec(&mut self)
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: "init".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            });
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn on_node(mut self, node: &str) -> Self {
        spec(&mut self).node_name = Some(node.into());
        self
    }
    fn priority(mut self, p: i32) -> Self {
        spec(&mut self).priority = Some(p);
        self
    }
    fn started_at(mut self, seconds: i64) -> Self {
        let at = k8s_openapi::jiff::Timestamp::from_second(seconds).expect("a valid time");
        self.status.get_or_insert_with(Default::default).start_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
        self
    }
    fn node_selector(mut self, k: &str, v: &str) -> Self {
        spec(&mut self)
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn node_affinity(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let na = affinity(&mut self)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: vec![],
            })
            .node_selector_terms
            .push(requirement(key, op, values));
        self
    }
    fn preferred_node_affinity(
        mut self,
        weight: i32,
        key: &str,
        op: &str,
        values: &[&str],
    ) -> Self {
        let na = affinity(&mut self)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                weight,
                preference: requirement(key, op, values),
            });
        self
    }
    fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        spec(&mut self)
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(toleration(key, op, value, effect));
        self
    }
    fn host_port(mut self, port: i32, protocol: &str, host_ip: &str) -> Self {
        let c = &mut spec(&mut self).containers[0];
        c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: Some(protocol.into()),
            host_ip: (!host_ip.is_empty()).then(|| host_ip.into()),
            name: None,
        });
        self
    }
    fn image(mut self, image: &str) -> Self {
        spec(&mut self).containers[0].image = Some(image.into());
        self
    }
    fn affinity_to(mut self, k: &str, v: &str, topology: &str) -> Self {
        affinity(&mut self)
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term(k, v, topology));
        self
    }
    fn anti_affinity_to(mut self, k: &str, v: &str, topology: &str) -> Self {
        affinity(&mut self)
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term(k, v, topology));
        self
    }
    fn preferred_affinity_to(mut self, weight: i32, k: &str, v: &str, topology: &str) -> Self {
        affinity(&mut self)
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term(k, v, topology),
            });
        self
    }
    fn preferred_anti_affinity_to(mut self, weight: i32, k: &str, v: &str, topology: &str) -> Self {
        affinity(&mut self)
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term(k, v, topology),
            });
        self
    }
    fn spread(mut self, max_skew: i32, topology: &str, when: &str, k: &str, v: &str) -> Self {
        spec(&mut self)
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology.into(),
                when_unsatisfiable: when.into(),
                label_selector: selector(k, v),
                ..Default::default()
            });
        self
    }
}
