use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::HTTPGetAction;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn url(https: bool, host: &str, port: u16, path: &str) -> Url {
    Url {
        https,
        host: host.into(),
        port,
        path: path.into(),
    }
}

#[test]
fn locations_resolve_against_the_request() {
    let base = url(false, "10.42.0.5", 8080, "/app/health?x=1");
    let cases = [
        (
            "absolute path",
            "/other",
            url(false, "10.42.0.5", 8080, "/other"),
        ),
        (
            "relative path",
            "ready",
            url(false, "10.42.0.5", 8080, "/app/ready"),
        ),
        (
            "absolute URL on another port and scheme",
            "https://10.42.0.5:8443/h",
            url(true, "10.42.0.5", 8443, "/h"),
        ),
        (
            "absolute URL with the scheme's default port",
            "http://example.test",
            url(false, "example.test", 80, "/"),
        ),
        (
            "scheme-relative",
            "//10.42.0.6/x",
            url(false, "10.42.0.6", 80, "/x"),
        ),
        (
            "fragment dropped",
            "/f#top",
            url(false, "10.42.0.5", 8080, "/f"),
        ),
        (
            "IPv6 host",
            "http://[fd00::1]:81/",
            url(false, "fd00::1", 81, "/"),
        ),
    ];
    for (name, location, want) in cases {
        assert_eq!(resolve_location(&base, location), Ok(want), "{name}");
    }
    let bad = resolve_location(&base, "ftp://10.42.0.5/");
    assert!(bad.is_err(), "an unsupported scheme is an error: {bad:?}");
}

#[test]
fn urls_print_as_in_the_kubelets_messages() {
    let cases = [
        (
            "with a path",
            url(false, "10.42.0.5", 8080, "/healthz"),
            "http://10.42.0.5:8080/healthz",
        ),
        (
            "without a path",
            url(true, "10.42.0.5", 443, ""),
            "https://10.42.0.5:443",
        ),
        (
            "IPv6",
            url(false, "fd00::1", 80, "/"),
            "http://[fd00::1]:80/",
        ),
    ];
    for (name, u, want) in cases {
        assert_eq!(u.to_string(), want, "{name}");
    }
}

#[test]
fn actions_become_requests_with_the_kubelets_defaults() {
    let target = Target {
        container_id: "c".into(),
        pod_ip: Ipv4Addr::new(10, 42, 0, 5),
    };
    let action = HTTPGetAction {
        port: IntOrString::Int(8080),
        scheme: Some("HTTPS".into()),
        ..Default::default()
    };
    let get = HttpGet::for_action(&action, &target, &[], "kube-probe").unwrap();
    assert_eq!(get.url, url(true, "10.42.0.5", 8080, ""));
    assert_eq!(
        get.headers,
        vec![
            ("User-Agent".to_string(), "kube-probe/1.33".to_string()),
            ("Accept".to_string(), "*/*".to_string())
        ]
    );
    assert!(!get.follow_other_hosts);

    let with_host = HTTPGetAction {
        host: Some("node.local".into()),
        ..action.clone()
    };
    let get = HttpGet::for_action(&with_host, &target, &[], "kube-probe").unwrap();
    assert_eq!(get.url.host, "node.local", "host replaces the pod IP");

    let ftp = HTTPGetAction {
        scheme: Some("FTP".into()),
        ..action
    };
    assert!(HttpGet::for_action(&ftp, &target, &[], "kube-probe").is_err());
}
