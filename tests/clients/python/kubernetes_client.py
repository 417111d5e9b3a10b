"""The official Python client (kubernetes) against a kybern server: the response shapes
its typed API checks. Usage: python kubernetes_client.py KUBECONFIG CHECK"""
import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
NS = "default"
meta = client.V1ObjectMeta


def expect_error(call, status):
    try:
        call()
    except ApiException as e:
        assert e.status == status, (e.status, e.body)
        return e.body
    raise AssertionError(f"expected a {status}")


def typed_deletes_return_the_deleted_object():
    svc = core.create_namespaced_service(NS, client.V1Service(
        metadata=meta(name="web"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
    pv = core.create_persistent_volume(client.V1PersistentVolume(
        metadata=meta(name="pv1"),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"],
            host_path=client.V1HostPathVolumeSource(path="/tmp/kybern-never-mounted"))))
    pod = core.create_namespaced_pod(NS, client.V1Pod(
        metadata=meta(name="unscheduled"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")])))
    for deleted, kind, name in [
        (core.delete_namespaced_service("web", NS), "Service", svc.metadata.name),
        (core.delete_persistent_volume("pv1"), "PersistentVolume", pv.metadata.name),
        (core.delete_namespaced_pod("unscheduled", NS), "Pod", pod.metadata.name),
    ]:
        assert deleted.kind == kind and deleted.metadata.name == name, (kind, deleted)


def created_services_carry_upstreams_status():
    svc = core.create_namespaced_service(NS, client.V1Service(
        metadata=meta(name="lb"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
        status=client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(
            ingress=[client.V1LoadBalancerIngress(ip="192.0.2.1")]))))
    assert svc.status is not None and svc.status.load_balancer is not None, svc.status
    assert svc.status.load_balancer.ingress is None, "the request's status is not kept"
    raw = core.api_client.call_api(
        f"/api/v1/namespaces/{NS}/services/lb", "GET", _preload_content=False,
        auth_settings=["BearerToken"])[0].data
    assert json.loads(raw)["status"] == {"loadBalancer": {}}, raw


def error_bodies_are_byte_identical_to_upstreams():
    cm = core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta(name="c"), data={"a": "1"}))
    body = expect_error(lambda: core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=meta(name="c"))), 409)
    assert body == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                    '"message":"configmaps \\"c\\" already exists","reason":"AlreadyExists",'
                    '"details":{"name":"c","kind":"configmaps"},"code":409}\n'), body
    stale = client.V1ConfigMap(metadata=meta(name="c", resource_version=cm.metadata.resource_version),
                               data={"a": "2"})
    core.replace_namespaced_config_map("c", NS, stale)
    body = expect_error(lambda: core.replace_namespaced_config_map("c", NS, stale), 409)
    assert body == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                    '"message":"Operation cannot be fulfilled on configmaps \\"c\\": the object has been '
                    'modified; please apply your changes to the latest version and try again",'
                    '"reason":"Conflict","details":{"name":"c","kind":"configmaps"},"code":409}\n'), body
    body = expect_error(lambda: core.read_namespaced_config_map("nope", NS), 404)
    assert body == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                    '"message":"configmaps \\"nope\\" not found","reason":"NotFound",'
                    '"details":{"name":"nope","kind":"configmaps"},"code":404}\n'), body


def objects_read_back_with_kind_first_and_no_empty_fields():
    core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "plain", "annotations": {}}})
    raw = core.api_client.call_api(
        f"/api/v1/namespaces/{NS}/configmaps/plain", "GET", _preload_content=False,
        auth_settings=["BearerToken"])[0].data.decode()
    assert raw.startswith('{"kind":"ConfigMap","apiVersion":"v1",'), raw
    assert "annotations" not in raw, raw


globals()[sys.argv[2]]()
print("ok")
