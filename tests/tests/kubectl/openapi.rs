//! kubectl's validation of kinds missing from `/openapi/v3` (it falls back to the
//! protobuf `/openapi/v2`), `explain` of a user CRD, and `kubectl auth`, which posts its
//! reviews in protobuf.

use crate::common::Backend;
use crate::{path_str, Cluster};

const CONFIGMAP_LIST: &str = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed}
  data: {k: v}
";

const ACCESS_REVIEW: &str = "\
apiVersion: authorization.k8s.io/v1
kind: SelfSubjectAccessReview
spec:
  resourceAttributes: {verb: create, resource: pods, namespace: default}
";

const GADGET_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.org}
spec:
  group: example.org
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the gadget does.
            properties:
              speed: {type: integer, description: How fast it spins.}
";

#[tokio::test]
async fn kubectl_validates_kinds_missing_from_openapi_v3_against_the_protobuf_openapi_v2() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let list = c.manifest("list.yaml", CONFIGMAP_LIST);
    let review = c.manifest("review.yaml", ACCESS_REVIEW);
    // A List has no group-version in /openapi/v3, nor has a review kind a PATCH there:
    // kubectl then reads client-go's OpenAPISchema, the protobuf /openapi/v2.
    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "apply --server-side of a List",
            vec!["apply", "--server-side", "-f", path_str(&list)],
            "configmap/listed serverside-applied\n",
        ),
        (
            "create --validate=strict of a List",
            vec![
                "create",
                "--validate=strict",
                "-f",
                path_str(&list),
                "--dry-run=server",
            ],
            "configmap/listed created (server dry run)\n",
        ),
        (
            "create --validate=strict of a SelfSubjectAccessReview",
            vec![
                "create",
                "--validate=strict",
                "-f",
                path_str(&review),
                "-o",
                "jsonpath={.status.allowed}",
            ],
            "true",
        ),
    ];
    for (name, args, want) in cases {
        let out = k.output(&args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{name}");
    }
}

#[tokio::test]
async fn kubectl_explain_describes_a_user_crds_fields_and_openapi_v2_publishes_its_schema() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let crd = c.manifest("crd.yaml", GADGET_CRD);
    k.run(&["apply", "-f", path_str(&crd)]);
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.org",
    ]);
    let explained = k.run(&["explain", "gadgets.spec.speed"]);
    assert!(
        explained.contains("How fast it spins."),
        "explain prints the field's description:\n{explained}"
    );
    let v2: serde_json::Value =
        serde_json::from_str(&k.run(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(
        v2.pointer("/definitions/org.example.v1.Gadget/properties/spec/description"),
        Some(&serde_json::json!("What the gadget does."))
    );
}

#[tokio::test]
async fn kubectl_auth_answers_can_i_list_and_whoami_for_the_admin() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "can-i create pods",
            &["auth", "can-i", "create", "pods"],
            "yes\n",
        ),
        (
            "can-i in another namespace",
            &["auth", "can-i", "delete", "secrets", "-n", "kube-system"],
            "yes\n",
        ),
        // As upstream lists it for an admin: cluster-admin's wildcards, then what every
        // authenticated user gets from system:basic-user, system:discovery and
        // system:public-info-viewer (health and version paths once from each of the last two).
        (
            "can-i --list",
            &["auth", "can-i", "--list"],
            concat!(
                "Resources                                       Non-Resource URLs   Resource Names   Verbs\n",
                "*.*                                             []                  []               [*]\n",
                "                                                [*]                 []               [*]\n",
                "selfsubjectreviews.authentication.k8s.io        []                  []               [create]\n",
                "selfsubjectaccessreviews.authorization.k8s.io   []                  []               [create]\n",
                "selfsubjectrulesreviews.authorization.k8s.io    []                  []               [create]\n",
                "                                                [/api/*]            []               [get]\n",
                "                                                [/api]              []               [get]\n",
                "                                                [/apis/*]           []               [get]\n",
                "                                                [/apis]             []               [get]\n",
                "                                                [/healthz]          []               [get]\n",
                "                                                [/healthz]          []               [get]\n",
                "                                                [/livez]            []               [get]\n",
                "                                                [/livez]            []               [get]\n",
                "                                                [/openapi/*]        []               [get]\n",
                "                                                [/openapi]          []               [get]\n",
                "                                                [/readyz]           []               [get]\n",
                "                                                [/readyz]           []               [get]\n",
                "                                                [/version/]         []               [get]\n",
                "                                                [/version/]         []               [get]\n",
                "                                                [/version]          []               [get]\n",
                "                                                [/version]          []               [get]\n",
            ),
        ),
        (
            "whoami",
            &["auth", "whoami"],
            "ATTRIBUTE   VALUE\n\
             Username    kybern-admin\n\
             Groups      [system:masters system:authenticated]\n",
        ),
    ];
    for (name, args, want) in cases {
        assert_eq!(k.run(args), want, "{name}");
    }
}
