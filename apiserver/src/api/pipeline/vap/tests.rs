use serde_json::json;

use super::*;

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
    let d = evaluate(&p, &deployment(6), &Value::Null).unwrap();
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
    assert!(evaluate(&p, &deployment(1), &Value::Null)
        .unwrap()
        .is_empty());
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
    assert_eq!(evaluate(&p, &deployment(4), &params).unwrap().len(), 1);
    assert!(evaluate(&p, &deployment(3), &params).unwrap().is_empty());
    assert!(
        evaluate(&p, &deployment(1), &json!({"data": {}}))
            .unwrap()
            .is_empty(),
        "a false match condition skips the policy before its variables fail"
    );
}

#[test]
fn a_runtime_error_is_an_error_and_a_compile_error_a_configuration_error() {
    let p = policy(json!({"validations": [{"expression": "object.spec.paused"}]}));
    assert_eq!(
        evaluate(&p, &deployment(1), &Value::Null).err().as_deref(),
        Some("expression 'object.spec.paused' resulted in error: no such key: paused")
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
