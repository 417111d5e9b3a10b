use serde_json::json;

use super::*;

fn deployment() -> Activation {
    let mut a = Activation::new();
    a.bind_json(
        "object",
        &json!({
            "metadata": {"name": "web", "labels": {"app": "Web", "tier": "front"}},
            "spec": {"replicas": 6, "template": {"spec": {"containers": [
                {"name": "a", "image": "registry.local/a:1.0"},
                {"name": "b", "image": "nginx:latest"}
            ]}}}
        }),
    );
    a.bind_json("oldObject", &Json::Null);
    a
}

#[test]
fn kubernetes_expressions_evaluate_as_upstream() {
    let cases = [
        ("integers compare with int literals", "object.spec.replicas <= 5", false),
        ("has on a present field", "has(object.metadata.labels)", true),
        ("has on an absent field", "has(object.metadata.annotations)", false),
        ("null old object on create", "oldObject == null", true),
        ("startsWith", "object.metadata.name.startsWith('we')", true),
        ("endsWith", "object.metadata.name.endsWith('b')", true),
        ("contains", "object.metadata.name.contains('e')", true),
        ("matches", "object.metadata.name.matches('^[a-z]+$')", true),
        ("size of a string", "size(object.metadata.name) == 3", true),
        ("size of a map", "object.metadata.labels.size() == 2", true),
        ("lowerAscii", "object.metadata.labels.app.lowerAscii() == 'web'", true),
        ("upperAscii", "object.metadata.labels.tier.upperAscii() == 'FRONT'", true),
        ("split", "'a,b'.split(',').size() == 2", true),
        ("in on a map", "'app' in object.metadata.labels", true),
        (
            "all",
            "object.spec.template.spec.containers.all(c, c.image.contains(':'))",
            true,
        ),
        (
            "exists",
            "object.spec.template.spec.containers.exists(c, c.image.endsWith(':latest'))",
            true,
        ),
        (
            "exists_one",
            "object.spec.template.spec.containers.exists_one(c, c.name == 'a')",
            true,
        ),
        (
            "map",
            "object.spec.template.spec.containers.map(c, c.name) == ['a', 'b']",
            true,
        ),
        (
            "filter",
            "object.spec.template.spec.containers.filter(c, c.image.startsWith('registry.local/')).size() == 1",
            true,
        ),
        (
            "optional field with a default",
            "object.metadata.?annotations.orValue({}).size() == 0",
            true,
        ),
    ];
    let a = deployment();
    for (name, source, want) in cases {
        let e = Expression::compile(source).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.eval_bool(&a), Ok(want), "{name}: {source}");
    }
}

#[test]
fn invalid_syntax_is_a_compilation_error_with_the_position() {
    let err = Expression::compile("object.spec.replicas <= ").unwrap_err();
    assert!(
        err.starts_with("compilation failed: ERROR: <input>:1:"),
        "{err}"
    );
    assert!(err.contains("Syntax error"), "{err}");
}

#[test]
fn a_missing_field_is_upstreams_runtime_error() {
    let e = Expression::compile("object.spec.paused == false").unwrap();
    assert_eq!(
        e.eval_bool(&deployment()),
        Err(
            "expression 'object.spec.paused == false' resulted in error: no such key: paused"
                .into()
        )
    );
}

#[test]
fn a_non_bool_result_is_an_error_where_a_bool_is_wanted() {
    let e = Expression::compile("object.metadata.name").unwrap();
    let err = e.eval_bool(&deployment()).unwrap_err();
    assert!(err.contains("expected type bool"), "{err}");
    assert_eq!(e.eval(&deployment()), Ok(Value::from("web")));
}

#[test]
fn variables_are_a_map_later_expressions_read() {
    let mut a = deployment();
    a.bind("variables", map_of(vec![("limit".into(), Value::Int(5))]));
    let e = Expression::compile("object.spec.replicas > variables.limit").unwrap();
    assert_eq!(e.eval_bool(&a), Ok(true));
}

#[test]
fn the_authorizer_asks_the_check_with_what_the_builder_collected() {
    let mut a = Activation::new();
    a.with_authorizer(
        Arc::new(|r: &authorizer::Request, verb: &str| {
            let allowed = r.group.as_deref() == Some("apps")
                && r.resource.as_deref() == Some("deployments")
                && r.namespace.as_deref() == Some("ns")
                && verb == "create";
            (allowed, if allowed { String::new() } else { "no".into() })
        }),
        authorizer::Request::default(),
    );
    let cases = [
        (
            "allowed",
            "authorizer.group('apps').resource('deployments').namespace('ns').check('create').allowed()",
            true,
        ),
        (
            "another verb",
            "authorizer.group('apps').resource('deployments').namespace('ns').check('delete').allowed()",
            false,
        ),
        (
            "the reason",
            "authorizer.group('').resource('pods').check('get').reason() == 'no'",
            true,
        ),
    ];
    for (name, source, want) in cases {
        let e = Expression::compile(source).unwrap();
        assert_eq!(e.eval_bool(&a), Ok(want), "{name}");
    }
}

#[test]
fn the_authorizer_asks_about_a_service_account_or_the_requests_own_resource() {
    let mut a = Activation::new();
    a.with_authorizer(
        Arc::new(|r: &authorizer::Request, verb: &str| {
            let who = match &r.service_account {
                Some((ns, name)) => format!("sa {ns}/{name}"),
                None => "user".into(),
            };
            let what = format!(
                "{}/{}/{}/{}/{}",
                r.group.as_deref().unwrap_or("-"),
                r.resource.as_deref().unwrap_or("-"),
                r.subresource.as_deref().unwrap_or("-"),
                r.namespace.as_deref().unwrap_or("-"),
                r.name.as_deref().unwrap_or("-")
            );
            (verb == "get", format!("{who} {what}"))
        }),
        authorizer::Request {
            group: Some("apps".into()),
            resource: Some("deployments".into()),
            namespace: Some("ns".into()),
            name: Some("web".into()),
            ..Default::default()
        },
    );
    let cases = [
        (
            "a service account",
            "authorizer.serviceAccount('ns', 'builder').group('').resource('pods').namespace('ns').check('get').reason()",
            "sa ns/builder /pods/-/ns/-",
        ),
        (
            "the request's resource",
            "authorizer.requestResource.check('get').reason()",
            "user apps/deployments/-/ns/web",
        ),
        (
            "the request's resource, another subresource",
            "authorizer.requestResource.subresource('scale').check('update').reason()",
            "user apps/deployments/scale/ns/web",
        ),
    ];
    for (name, source, want) in cases {
        let e = Expression::compile(source).unwrap();
        assert_eq!(e.eval(&a), Ok(Value::from(want)), "{name}");
    }
    let e = Expression::compile(
        "authorizer.requestResource.check('get').allowed() && !authorizer.path('/x').check('get').errored() && authorizer.path('/x').check('get').error() == ''",
    )
    .unwrap();
    assert_eq!(e.eval_bool(&a), Ok(true));
}

#[test]
fn kubernetes_quantities_compare_and_compute_as_upstream() {
    let cases = [
        ("isQuantity", "isQuantity('1.5Gi') && !isQuantity('1.5 Gi')", true),
        ("equal amounts", "quantity('1') == quantity('1000m')", true),
        ("isLessThan", "quantity('500Mi').isLessThan(quantity('1Gi'))", true),
        ("isGreaterThan", "quantity('2').isGreaterThan(quantity('1500m'))", true),
        ("compareTo", "quantity('1k').compareTo(quantity('1000')) == 0 && quantity('1').compareTo(quantity('2')) == -1", true),
        ("add a quantity", "quantity('1Gi').add(quantity('512Mi')) == quantity('1.5Gi')", true),
        ("add an int", "quantity('500m').add(1) == quantity('1500m')", true),
        ("sub", "quantity('1').sub(quantity('250m')) == quantity('750m')", true),
        ("sign", "quantity('-1').sign() == -1 && quantity('0').sign() == 0", true),
        ("isInteger", "quantity('2k').isInteger() && !quantity('1500m').isInteger()", true),
        ("asInteger", "quantity('2Ki').asInteger() == 2048", true),
        ("asApproximateFloat", "quantity('1500m').asApproximateFloat() == 1.5", true),
        (
            "a container's memory limit",
            "object.spec.containers.all(c, quantity(c.resources.limits.memory).isLessThan(quantity('1Gi')))",
            true,
        ),
    ];
    let mut a = Activation::new();
    a.bind_json(
        "object",
        &json!({"spec": {"containers": [{"resources": {"limits": {"memory": "512Mi"}}}]}}),
    );
    for (name, source, want) in cases {
        let e = Expression::compile(source).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.eval_bool(&a), Ok(want), "{name}: {source}");
    }
    let errors = [
        (
            "quantity('x')",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        ("quantity('1500m').asInteger()", "cannot convert value to integer"),
    ];
    for (source, want) in errors {
        let e = Expression::compile(source).unwrap();
        assert_eq!(
            e.eval(&a),
            Err(format!("expression '{source}' resulted in error: {want}")),
            "{source}"
        );
    }
}

#[test]
fn urls_parse_as_gos_request_uris_and_answer_their_parts() {
    let cases = [
        ("isURL of an absolute URL", "isURL('https://example.com:8443/a%20b?x=1')", true),
        ("isURL of an absolute path", "isURL('/healthz')", true),
        ("isURL of a relative reference", "!isURL('example.com/a') && !isURL('')", true),
        ("scheme", "url('HTTPS://example.com').getScheme() == 'https'", true),
        ("host with port", "url('https://user@example.com:8443/p').getHost() == 'example.com:8443'", true),
        ("hostname", "url('https://example.com:8443/p').getHostname() == 'example.com'", true),
        ("port", "url('https://example.com:8443/p').getPort() == '8443' && url('https://example.com').getPort() == ''", true),
        ("IPv6", "url('https://[::1]:80/').getHostname() == '::1' && url('https://[::1]:80/').getPort() == '80'", true),
        ("escaped path", "url('https://example.com/a%20b#frag').getEscapedPath() == '/a%20b'", true),
        ("query", "url('https://example.com/?a=1&b=x+y&a=2').getQuery() == {'a': ['1', '2'], 'b': ['x y']}", true),
        ("no query", "url('/p').getQuery() == {}", true),
    ];
    let a = Activation::new();
    for (name, source, want) in cases {
        let e = Expression::compile(source).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.eval_bool(&a), Ok(want), "{name}: {source}");
    }
    let e = Expression::compile("url('example.com')").unwrap();
    assert_eq!(
        e.eval(&a),
        Err("expression 'url('example.com')' resulted in error: URL parse error during conversion from string: parse \"example.com\": invalid URI for request".into())
    );
}
