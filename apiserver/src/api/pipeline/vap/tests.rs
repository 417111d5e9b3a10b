use serde_json::json;

use super::evaluate::{evaluate, Decision, Outcome};
use super::*;
use crate::cel::Activation;

fn policy(spec: Value) -> Policy {
    Policy::compile(&json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": spec}))
}

fn deployment(replicas: i64) -> Activation {
    let mut a = Activation::new();
    a.bind_json(
        "object",
        &json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas}}),
    );
    a.bind_json("oldObject", &Value::Null);
    a
}

#[test]
fn a_false_validation_gives_its_message_or_the_failed_expression() {
    let p = policy(json!({"validations": [
        {"expression": "object.spec.replicas <= 5"},
        {"expression": "object.spec.replicas <= 3", "message": "at most 3"},
        {"expression": "object.spec.replicas <= 2", "message": "m",
         "messageExpression": "'replicas is ' + string(object.spec.replicas)", "reason": "Forbidden"}
    ]}));
    assert!(p.error.is_none());
    let d = evaluate(&p, &deployment(6), &Value::Null).decisions;
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "failed expression: object.spec.replicas <= 5",
            "at most 3",
            "replicas is 6"
        ]
    );
    assert_eq!(d[2].reason, "Forbidden");
    assert_eq!(
        evaluate(&p, &deployment(1), &Value::Null),
        Outcome::default()
    );
}

#[test]
fn params_variables_and_match_conditions_are_seen_by_validations() {
    let p = policy(json!({
        "matchConditions": [{"name": "big", "expression": "object.spec.replicas > 1"}],
        "variables": [
            {"name": "limit", "expression": "params.data.max"},
            {"name": "over", "expression": "object.spec.replicas > variables.limit"}
        ],
        "validations": [{"expression": "!variables.over"}]
    }));
    let params = json!({"data": {"max": 3}});
    assert_eq!(evaluate(&p, &deployment(4), &params).decisions.len(), 1);
    assert!(evaluate(&p, &deployment(3), &params).decisions.is_empty());
    assert_eq!(
        evaluate(&p, &deployment(1), &json!({"data": {}})),
        Outcome::default(),
        "a false match condition skips the policy before its variables fail"
    );
}

#[test]
fn a_runtime_error_is_a_decision_under_fail_and_a_compile_error_a_configuration_error() {
    let p = policy(json!({"validations": [{"expression": "object.spec.paused"}]}));
    assert_eq!(
        evaluate(&p, &deployment(1), &Value::Null).decisions,
        [Decision {
            index: 0,
            message: "expression 'object.spec.paused' resulted in error: no such key: paused"
                .into(),
            reason: String::new(),
        }]
    );
    let p = policy(json!({"failurePolicy": "Ignore",
        "validations": [{"expression": "object.spec.paused"}]}));
    assert_eq!(
        evaluate(&p, &deployment(1), &Value::Null),
        Outcome::default()
    );
    let p = policy(json!({"validations": [{"expression": "object.spec.replicas <"}]}));
    let e = p.error.expect("a configuration error");
    assert!(
        e.starts_with("spec.validations[0].expression: compilation failed: ERROR: <input>:1:"),
        "{e}"
    );
}

#[test]
fn invalid_expressions_are_refused_with_their_field() {
    let causes = policy::validate_policy(&json!({"spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["deployments"]}]},
        "variables": [{"name": "v", "expression": "a +"}],
        "validations": [{"expression": "true"}, {"expression": "true", "messageExpression": "'x"}]
    }}));
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.variables[0].expression",
            "spec.validations[1].messageExpression"
        ]
    );
    assert!(causes[0].message.contains("compilation failed: ERROR"));
}

#[test]
fn policies_and_bindings_missing_what_upstream_requires_are_refused() {
    let cases = [
        (
            "a policy without match constraints or validations",
            policy::validate_policy(&json!({"spec": {}})),
            vec![
                "spec.matchConstraints: Required value",
                "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
            ],
        ),
        (
            "a policy with no resource rules",
            policy::validate_policy(&json!({"spec": {"matchConstraints": {},
                "validations": [{"expression": "true"}]}})),
            vec!["spec.matchConstraints.resourceRules: Required value"],
        ),
        (
            "a binding with no policy name or actions",
            policy::validate_binding(&json!({"spec": {"paramRef": {"name": "p"}}})),
            vec![
                "spec.policyName: Required value",
                "spec.validationActions: Required value: at least one validation action is required",
                "spec.paramRef.parameterNotFoundAction: Required value",
            ],
        ),
        (
            "a binding with both Deny and Warn",
            policy::validate_binding(&json!({"spec": {"policyName": "p",
                "validationActions": ["Deny", "Warn"]}})),
            vec!["spec.validationActions: Invalid value: \"[\\\"Deny\\\", \\\"Warn\\\"]\": must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"],
        ),
        (
            "a complete binding",
            policy::validate_binding(&json!({"spec": {"policyName": "p",
                "validationActions": ["Warn", "Audit"]}})),
            vec![],
        ),
    ];
    for (name, causes, want) in cases {
        let got: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn audit_annotations_publish_strings_and_leave_out_null_and_empty_values() {
    let cases = [
        ("a string", "'replicas ' + string(object.spec.replicas)", Ok(Some("replicas 6"))),
        ("trimmed", "'  six  '", Ok(Some("six"))),
        ("null", "null", Ok(None)),
        ("empty", "''", Ok(None)),
        (
            "another type",
            "object.spec.replicas",
            Err("valueExpression 'object.spec.replicas' resulted in unsupported return type: int. Return type must be either string or null."),
        ),
        (
            "an error",
            "object.spec.paused",
            Err("expression 'object.spec.paused' resulted in error: no such key: paused"),
        ),
    ];
    for (name, expression, want) in cases {
        let p = policy(json!({"auditAnnotations": [{"key": "k", "valueExpression": expression}]}));
        let got = evaluate(&p, &deployment(6), &Value::Null);
        let want = match want {
            Ok(value) => Outcome {
                annotations: value
                    .map(|v| ("k".to_string(), v.to_string()))
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            Err(e) => Outcome {
                errors: vec![e.to_string()],
                ..Default::default()
            },
        };
        assert_eq!(got, want, "{name}");
        let ignored = policy(json!({"failurePolicy": "Ignore",
            "auditAnnotations": [{"key": "k", "valueExpression": expression}]}));
        assert!(
            evaluate(&ignored, &deployment(6), &Value::Null)
                .errors
                .is_empty(),
            "{name}: under Ignore an annotation's error is left out"
        );
    }
}

#[test]
fn audit_annotation_keys_are_checked_as_upstream() {
    let spec = |annotations: Value| {
        json!({"metadata": {"name": "p.example.com"}, "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["deployments"]}]},
            "auditAnnotations": annotations}})
    };
    let cases = [
        ("a valid key", json!([{"key": "replicas", "valueExpression": "'x'"}]), vec![]),
        (
            "a key with a slash",
            json!([{"key": "a/b", "valueExpression": "'x'"}]),
            vec![r#"spec.auditAnnotations[0].key: Invalid value: "p.example.com/a/b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#],
        ),
        (
            "a duplicate key",
            json!([{"key": "k", "valueExpression": "'x'"}, {"key": "k", "valueExpression": "'y'"}]),
            vec![r#"spec.auditAnnotations[1].key: Duplicate value: "k""#],
        ),
        (
            "no value expression",
            json!([{"key": "k", "valueExpression": " "}]),
            vec!["spec.auditAnnotations[0].valueExpression: Required value: valueExpression is not specified"],
        ),
    ];
    for (name, annotations, want) in cases {
        let got: Vec<String> = policy::validate_policy(&spec(annotations))
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn variables_are_evaluated_only_when_used_and_their_errors_only_where_read() {
    let p = policy(json!({
        "variables": [
            {"name": "broken", "expression": "object.spec.paused"},
            {"name": "limit", "expression": "5"},
            {"name": "over", "expression": "object.spec.replicas > variables.limit"}
        ],
        "validations": [
            {"expression": "!variables.over"},
            {"expression": "variables.over || !variables.broken"}
        ]
    }));
    let d = evaluate(&p, &deployment(6), &Value::Null).decisions;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].message, "failed expression: !variables.over");
    let d = evaluate(&p, &deployment(1), &Value::Null).decisions;
    assert_eq!(
        d,
        [Decision {
            index: 1,
            message: "expression 'variables.over || !variables.broken' resulted in error: composited variable \"broken\" fails to evaluate: no such key: paused".into(),
            reason: String::new(),
        }],
        "an unused broken variable is no error; a used one is, with upstream's text"
    );
}

#[test]
fn type_checking_warns_of_fields_the_matched_kinds_schema_does_not_declare() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "surge": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "template": {"type": "object", "properties": {
                "metadata": {"type": "object", "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "spec": {"type": "object", "properties": {
                "containers": {"type": "array", "items": {"type": "object", "properties": {
                    "image": {"type": "string"}}}}}}}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }}
    }});
    let kinds = [typecheck::Kind {
        gvk: "apps/v1, Kind=Deployment".into(),
        schema: std::sync::Arc::new(schema),
    }];
    let policy = |validations: Value| {
        json!({"spec": {"matchConstraints": {"resourceRules": [
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "deployments/scale"]},
            {"apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["pods"]}
        ]}, "validations": validations}})
    };
    assert_eq!(
        typecheck::resources(&policy(json!([]))),
        [(
            "apps".to_string(),
            "v1".to_string(),
            "deployments".to_string()
        )],
        "wildcards and subresources are not checked"
    );
    let cases = [
        ("declared fields", "object.spec.replicas > 1 && object.metadata.name != ''", None),
        ("an index into an array", "object.spec.template.spec.containers[0].image != ''", None),
        ("a field that admits anything", "object.spec.extra.anything == 1", None),
        (
            "an undefined field",
            "object.spec.replicass > 1",
            Some("apps/v1, Kind=Deployment: ERROR: <input>:1:12: undefined field 'replicass'\n | object.spec.replicass > 1\n | ...........^\n"),
        ),
        (
            "an undefined field of oldObject in has()",
            "has(oldObject.spec.paused)",
            Some("apps/v1, Kind=Deployment: ERROR: <input>:1:19: undefined field 'paused'\n | has(oldObject.spec.paused)\n | ..................^\n"),
        ),
        // Upstream's conformance cases: an int compared with a string, a label (a
        // string, through the map's value schema) with an int.
        (
            "an int compared with a string",
            "object.spec.replicas > '1'",
            Some("apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"),
        ),
        (
            "a label compared with an int",
            "object.spec.template.metadata.labels.app > 1",
            Some("apps/v1, Kind=Deployment: ERROR: <input>:1:42: found no matching overload for '_>_' applied to '(string, int)'\n | object.spec.template.metadata.labels.app > 1\n | .........................................^\n"),
        ),
        ("numbers of two types compared", "object.spec.replicas >= 1.5", None),
        (
            "a string added to an int",
            "object.spec.replicas + 'x' == 2",
            Some("apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_+_' applied to '(int, string)'\n | object.spec.replicas + 'x' == 2\n | .....................^\n"),
        ),
        ("an int-or-string field", "object.spec.surge > 1", None),
    ];
    for (name, expression, want) in cases {
        let warnings =
            typecheck::expression_warnings(&policy(json!([{"expression": expression}])), &kinds);
        let want: Vec<Value> = want
            .map(|w| json!({"fieldRef": "spec.validations[0].expression", "warning": w}))
            .into_iter()
            .collect();
        assert_eq!(warnings, want, "{name}");
    }
}
