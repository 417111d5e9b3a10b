//! The cluster's addresses as the API server serves them: the `kubernetes` Service's
//! endpoints at the advertised address (with a listener of its own there), the serving
//! certificate's names, the default ServiceCIDR and the kube-dns Service, and ClusterIPs
//! from the configured range. The real server in-process, real kube clients.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;

use apiserver::api::ServiceNet;
use apiserver::server::{self, Config, Server};

fn service_net(cidr: (Ipv4Addr, u8), dns: Ipv4Addr, domain: &str) -> ServiceNet {
    ServiceNet::new(cidr, dns, domain).unwrap()
}

/// 10.96.0.0/24 with DNS at 10.96.0.53 in `example.internal`.
fn small_net() -> ServiceNet {
    service_net(
        (Ipv4Addr::new(10, 96, 0, 0), 24),
        Ipv4Addr::new(10, 96, 0, 53),
        "example.internal",
    )
}

async fn start(dir: &Path, configure: impl FnOnce(&mut Config)) -> (Server, Client) {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir)
    };
    configure(&mut config);
    let server = server::start(config).await.unwrap();
    let client = client_at(&server.kubeconfig, None).await;
    (server, client)
}

/// A client from admin.kubeconfig, at `url` instead of the file's when given.
async fn client_at(kubeconfig: &Path, url: Option<String>) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    if let Some(url) = url {
        config.cluster_url = url.parse().unwrap();
    }
    Client::try_from(config).unwrap()
}

/// Polls `f` until it returns true (the server's own loops act in the background).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 30 s");
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_advertised_address_which_gets_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let advertised = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (server, client) = start(dir.path(), |c| c.advertise = Some(advertised)).await;
    let port = server.addr.port();

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = endpoints.get("kubernetes").await.unwrap();
    let subset = &ep.subsets.unwrap()[0];
    let ips: Vec<_> = subset
        .addresses
        .iter()
        .flatten()
        .map(|a| a.ip.clone())
        .collect();
    assert_eq!(ips, ["127.0.0.2"]);
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, i32::from(port));

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices.get("kubernetes").await.unwrap();
    assert_eq!(slice.endpoints[0].addresses, ["127.0.0.2"]);
    assert_eq!(slice.ports.unwrap()[0].port, Some(i32::from(port)));

    // The advertised address serves the API too, with a certificate valid for it.
    let there = client_at(
        &server.kubeconfig,
        Some(format!("https://127.0.0.2:{port}")),
    )
    .await;
    let services: Api<Service> = Api::namespaced(there, "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.43.0.1")
    );
}

#[tokio::test]
async fn no_second_listener_when_the_listen_address_covers_the_advertised_one() {
    let dir = tempfile::tempdir().unwrap();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (server, client) = start(dir.path(), |c| c.advertise = Some(loopback)).await;
    let port = server.addr.port();
    let endpoints: Api<Endpoints> = Api::namespaced(client, "default");
    let ep = endpoints.get("kubernetes").await.unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    let other = tokio::net::TcpStream::connect(("127.0.0.2", port)).await;
    assert!(other.is_err(), "only 127.0.0.1:{port} is served");
}

fn san_names(dir: &Path) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let pem = std::fs::read(dir.join("pki/server.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => <[u8; 4]>::try_from(*b)
                .ok()
                .map(|o| Ipv4Addr::from(o).to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_serving_certificate_names_the_advertised_address_and_the_kubernetes_service() {
    let cases = [
        (
            "defaults",
            None,
            [
                "127.0.0.1",
                "10.43.0.1",
                "kubernetes.default.svc.cluster.local",
            ],
        ),
        (
            "another range, domain and advertised address",
            Some(small_net()),
            [
                "127.0.0.3",
                "10.96.0.1",
                "kubernetes.default.svc.example.internal",
            ],
        ),
    ];
    for (name, net, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        // A certificate made earlier without those names is reissued at start.
        apiserver::pki::ensure(dir.path(), &[]).unwrap();
        let advertise: IpAddr = wanted[0].parse().unwrap();
        let (_server, _) = start(dir.path(), |c| {
            c.advertise = Some(advertise);
            if let Some(net) = net {
                c.service_net = net;
            }
        })
        .await;
        let names = san_names(dir.path());
        for want in wanted
            .iter()
            .chain(&["kubernetes.default.svc", "localhost"])
        {
            assert!(
                names.iter().any(|n| n == want),
                "{name}: {want} in {names:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_default_service_cidr_and_kube_dns_exist_with_the_configured_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), |c| c.service_net = small_net()).await;

    let cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    let default = cidrs.get("kubernetes").await.unwrap();
    assert_eq!(default.spec.unwrap().cidrs.unwrap(), ["10.96.0.0/24"]);
    let conditions = default.status.unwrap().conditions.unwrap();
    assert_eq!(
        (conditions[0].type_.as_str(), conditions[0].status.as_str()),
        ("Ready", "True")
    );

    let system: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns = system.get("kube-dns").await.unwrap();
    let labels = dns.metadata.labels.unwrap();
    for (k, v) in [
        ("k8s-app", "kube-dns"),
        ("kubernetes.io/cluster-service", "true"),
        ("kubernetes.io/name", "KubeDNS"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let spec = dns.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.53"));
    assert_eq!(
        spec.selector, None,
        "every agent answers on the address itself"
    );
    let ports: Vec<_> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".to_string(), 53, "UDP".to_string()),
            ("dns-tcp".to_string(), 53, "TCP".to_string())
        ]
    );

    let default_ns: Api<Service> = Api::namespaced(client, "default");
    let kubernetes = default_ns.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
}

#[tokio::test]
async fn kube_dns_and_the_default_service_cidr_come_back_when_deleted_and_are_kept_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), |c| {
        c.bootstrap_interval = Duration::from_millis(100)
    })
    .await;
    let system: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    let dp = DeleteParams::default();
    system.delete("kube-dns", &dp).await.unwrap();
    cidrs.delete("kubernetes", &dp).await.unwrap();
    eventually("kube-dns is made again", || async {
        system.get_opt("kube-dns").await.unwrap().is_some()
    })
    .await;
    eventually("the default ServiceCIDR is made again", || async {
        cidrs.get_opt("kubernetes").await.unwrap().is_some()
    })
    .await;
    let dns = system.get("kube-dns").await.unwrap();
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.10"));

    // What a restart runs over the stored objects keeps them as they are (the embedded
    // store cannot be opened twice in one process, so the start-up step runs alone).
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let before = (
        system.get("kube-dns").await.unwrap().metadata,
        endpoints.get("kubernetes").await.unwrap().metadata,
    );
    apiserver::api::bootstrap(&server.api).await.unwrap();
    let after = (
        system.get("kube-dns").await.unwrap().metadata,
        endpoints.get("kubernetes").await.unwrap().metadata,
    );
    assert_eq!(
        (before.0.uid, before.1.resource_version),
        (after.0.uid, after.1.resource_version),
        "the same kube-dns, and endpoints not rewritten"
    );
}

fn service(name: &str, cluster_ip: Option<&str>) -> Service {
    let mut spec = json!({"ports": [{"port": 80}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn cluster_ip(services: &Api<Service>, svc: &Service) -> Result<Ipv4Addr, kube::Error> {
    let created = services.create(&PostParams::default(), svc).await?;
    Ok(created.spec.unwrap().cluster_ip.unwrap().parse().unwrap())
}

#[tokio::test]
async fn cluster_ips_come_from_the_configured_range_above_its_static_band() {
    struct Case {
        name: &'static str,
        net: ServiceNet,
        dynamic_from: Ipv4Addr,
        dynamic_to: Ipv4Addr,
        static_ip: &'static str,
        outside: &'static str,
        range: &'static str,
    }
    let cases = [
        Case {
            name: "a /16",
            net: ServiceNet::default(),
            dynamic_from: Ipv4Addr::new(10, 43, 1, 1),
            dynamic_to: Ipv4Addr::new(10, 43, 255, 254),
            static_ip: "10.43.0.12",
            outside: "10.96.0.12",
            range: "10.43.0.0/16",
        },
        Case {
            name: "a /24",
            net: small_net(),
            dynamic_from: Ipv4Addr::new(10, 96, 0, 17),
            dynamic_to: Ipv4Addr::new(10, 96, 0, 254),
            static_ip: "10.96.0.12",
            outside: "10.43.0.12",
            range: "10.96.0.0/24",
        },
    ];
    for case in cases {
        let name = case.name;
        let dir = tempfile::tempdir().unwrap();
        let (_server, client) = start(dir.path(), |c| c.service_net = case.net.clone()).await;
        let services: Api<Service> = Api::namespaced(client, "default");
        for i in 0..8 {
            let ip = cluster_ip(&services, &service(&format!("dyn-{i}"), None))
                .await
                .unwrap();
            assert!(
                (case.dynamic_from..=case.dynamic_to).contains(&ip),
                "{name}: {ip} above the static band"
            );
        }
        let ip = cluster_ip(&services, &service("static", Some(case.static_ip)))
            .await
            .unwrap();
        assert_eq!(ip.to_string(), case.static_ip, "{name}: a static address");
        let refused = cluster_ip(&services, &service("outside", Some(case.outside)))
            .await
            .unwrap_err();
        let kube::Error::Api(status) = refused else {
            panic!("{name}: {refused}")
        };
        assert_eq!(status.code, 422, "{name}");
        let want = format!(
            "spec.clusterIPs: Invalid value: \"{o}\": failed to allocate IP {o}: the provided IP ({o}) is not in the valid range. The range of valid IPs is {}",
            case.range,
            o = case.outside
        );
        assert!(status.message.contains(&want), "{name}: {}", status.message);
    }
}

#[tokio::test]
async fn a_full_range_refuses_the_next_service_as_upstream_does() {
    let dir = tempfile::tempdir().unwrap();
    // 14 addresses: the kubernetes Service's, kube-dns's and 12 for others.
    let net = service_net(
        (Ipv4Addr::new(10, 96, 0, 0), 28),
        Ipv4Addr::new(10, 96, 0, 10),
        "cluster.local",
    );
    let (_server, client) = start(dir.path(), |c| c.service_net = net).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let mut got = Vec::new();
    for i in 0..12 {
        got.push(
            cluster_ip(&services, &service(&format!("s{i}"), None))
                .await
                .unwrap(),
        );
    }
    got.sort();
    let want: Vec<Ipv4Addr> = (2..=14)
        .filter(|o| *o != 10)
        .map(|o| Ipv4Addr::new(10, 96, 0, o))
        .collect();
    assert_eq!(got, want, "every free address, once");
    let full = cluster_ip(&services, &service("one-too-many", None))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = full else {
        panic!("{full}")
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            500,
            "Internal error occurred: failed to allocate a serviceIP: range is full"
        )
    );
}
