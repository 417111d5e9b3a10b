"""lightkube against a kybern server: its typed models, server-side apply, watch and
errors. Usage: python lightkube_client.py KUBECONFIG CHECK"""
import sys

import httpx
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Service

kube = Client(KubeConfig.from_file(sys.argv[1]), namespace="default", field_manager="lightkube",
              timeout=httpx.Timeout(20))


def services_round_trip_through_typed_models():
    svc = kube.create(Service(metadata=ObjectMeta(name="web"),
                              spec=ServiceSpec(ports=[ServicePort(port=80)])))
    assert svc.status is not None and svc.status.loadBalancer is not None, svc.status
    assert svc.spec.clusterIP, svc.spec
    deleted = kube.delete(Service, "web")
    assert deleted is None or getattr(deleted, "kind", "Service") == "Service", deleted
    try:
        kube.get(Service, "web")
    except ApiError as e:
        assert e.status.code == 404 and e.status.reason == "NotFound", e.status
    else:
        raise AssertionError("the deleted Service is still there")


def server_side_apply_and_watch_see_the_same_object():
    first = kube.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "1"}))
    rv = first.metadata.resourceVersion
    again = kube.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "1"}))
    assert again.metadata.resourceVersion == rv, "an identical apply writes nothing"
    kube.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "2"}))
    # Only this object: kube-root-ca.crt may be published into the namespace meanwhile.
    for op, obj in kube.watch(ConfigMap, fields={"metadata.name": "c"}, resource_version=rv):
        assert op == "MODIFIED" and obj.data == {"a": "2"}, (op, obj)
        break
    try:
        kube.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "3"}), field_manager="other")
    except ApiError as e:
        assert e.status.code == 409 and e.status.reason == "Conflict", e.status
    else:
        raise AssertionError("a second manager's apply of an owned field conflicts")


globals()[sys.argv[2]]()
print("ok")
