//! Table-driven policy cases: matching, precedence, weights, failover, parameter rules, schema
//! validation, deny reasons, and the problems a bad file reports.

use serde_json::{Map, Value, json};

use super::*;
use crate::decide::DenialKind;
use crate::policy::quota_of_key;

const POLICY: &str = r#"
visibility:
  default: visible
  rules:
    - name: cf-sees-aws-only
      platforms: [cf]
      brokers: [aws]
      effect: show
    - name: cf-hides-the-rest
      platforms: [cf]
      effect: hide
    - name: dev-free-only
      platforms: [k8s-dev]
      free: false
      effect: hide
    - name: no-preview-in-prod
      platforms: [k8s-prod]
      tags: [preview, beta]
      effect: hide
    - name: no-big-sql
      platforms: ["k8s-*"]
      services: ["azure.azure-sql-*"]
      plans: ["premium*"]
      effect: hide
offerings:
  - name: mysql
    description: MySQL on the right cloud
    tags: [mysql]
    plans:
      - {name: small, description: small}
      - {name: large, description: large, free: false}
    placement:
      - name: eu-region
        when: {parameters.region: ["eu-*", westeurope]}
        candidates:
          - {broker: azure, service: azure-mysql-5-7, plans: {small: basic, large: standard}}
      - name: team-b
        when: {context.namespace: [team-b, "team-b-*"]}
        candidates:
          - {broker: aws, service: rdsmysql, plans: {small: dev, large: production}}
      - name: spread
        when: {platform: [k8s-prod]}
        candidates:
          - {broker: azure, service: azure-mysql-5-7, plans: {small: basic, large: standard}, weight: 3}
          - {broker: gcp, service: google-cloudsql-mysql, plans: {small: db-f1, large: db-n1}, weight: 1}
          - {broker: aws, service: rdsmysql, plans: {small: dev, large: production}}
      - name: default
        candidates:
          - {broker: azure, service: azure-mysql-5-7, plans: {small: basic, large: standard}}
          - {broker: gcp, service: google-cloudsql-mysql, plans: {small: db-f1, large: db-n1}}
parameters:
  - name: cost-center
    platforms: ["k8s-*"]
    defaults:
      cost_center: "{context.namespace_annotations.example.com/cost-center}"
      owner: platform-team
  - name: encrypt
    services: ["aws.*", mysql]
    force: {encrypted: true}
  - name: regions
    services: [mysql]
    allowed: {region: ["eu-*", westeurope, us-east-1]}
  - name: no-public
    forbid: [public_access, "firewall_*"]
  - name: bind-readonly-in-dev
    platforms: [k8s-dev]
    operations: [bind]
    force: {role: readonly}
deny:
  - name: no-sql-from-dev
    platforms: [k8s-dev]
    services: ["azure.azure-sql-*"]
    operations: [provision]
    reason: SQL databases are provisioned from production clusters only
  - name: no-deletes-in-protected-namespaces
    operations: [deprovision, unbind]
    when: {context.namespace: ["protected-*"]}
    reason: protected namespaces keep their services
"#;

fn policy() -> Policy {
    Policy::parse(POLICY, osb_config::FileFormat::Yaml, "policy.yaml").unwrap()
}

fn plan<'a>(
    broker: &'a str,
    service: &'a str,
    plan: &'a str,
    tags: &'a [String],
    free: bool,
) -> PlanFacts<'a> {
    PlanFacts {
        broker,
        service,
        plan,
        tags,
        free,
    }
}

fn call<'a>(
    platform: &'a str,
    operation: Operation,
    instance_id: &'a str,
    plan: PlanFacts<'a>,
    context: Option<&'a Value>,
    parameters: Option<&'a Map<String, Value>>,
) -> CallFacts<'a> {
    CallFacts {
        platform,
        operation,
        instance_id,
        plan,
        context,
        parameters,
    }
}

#[test]
fn visibility_first_matching_rule_wins() {
    let p = policy();
    let none: Vec<String> = vec![];
    let preview = vec!["preview".to_owned()];
    let cases: &[(&str, PlanFacts<'_>, bool, Option<&str>)] = &[
        (
            "cf",
            plan("aws", "aws.s3", "standard", &none, true),
            true,
            Some("cf-sees-aws-only"),
        ),
        (
            "cf",
            plan("azure", "azure.azure-mysql-5-7", "basic", &none, true),
            false,
            Some("cf-hides-the-rest"),
        ),
        (
            "cf",
            plan("gateway", "mysql", "small", &none, true),
            false,
            Some("cf-hides-the-rest"),
        ),
        (
            "k8s-dev",
            plan("aws", "aws.s3", "standard", &none, false),
            false,
            Some("dev-free-only"),
        ),
        (
            "k8s-dev",
            plan("aws", "aws.s3", "standard", &none, true),
            true,
            None,
        ),
        (
            "k8s-prod",
            plan("gcp", "gcp.google-ml", "default", &preview, true),
            false,
            Some("no-preview-in-prod"),
        ),
        (
            "k8s-prod",
            plan("gcp", "gcp.google-storage", "standard", &none, true),
            true,
            None,
        ),
        (
            "k8s-prod",
            plan("azure", "azure.azure-sql-12-0", "premium-p1", &none, true),
            false,
            Some("no-big-sql"),
        ),
        (
            "k8s-prod",
            plan("azure", "azure.azure-sql-12-0", "basic", &none, true),
            true,
            None,
        ),
        (
            "k8s-staging",
            plan("azure", "azure.azure-sql-12-0", "premium-p2", &none, true),
            false,
            Some("no-big-sql"),
        ),
        (
            "other",
            plan("azure", "azure.azure-sql-12-0", "premium-p2", &none, true),
            true,
            None,
        ),
    ];
    for (platform, facts, visible, rule) in cases {
        let v = p.visibility(platform, facts);
        assert_eq!(
            (v.visible, v.rule.as_deref()),
            (*visible, *rule),
            "{platform} {}/{}",
            facts.service,
            facts.plan
        );
    }
}

#[test]
fn hidden_by_default_shows_only_what_a_rule_shows() {
    let text =
        "visibility:\n  default: hidden\n  rules:\n    - {name: s3, services: [aws.s3], effect: show}\n";
    let p = Policy::parse(text, osb_config::FileFormat::Yaml, "p.yaml").unwrap();
    let none: Vec<String> = vec![];
    assert!(
        p.visibility("x", &plan("aws", "aws.s3", "a", &none, true))
            .visible
    );
    let hidden = p.visibility("x", &plan("aws", "aws.sqs", "a", &none, true));
    assert_eq!((hidden.visible, hidden.rule), (false, None));
}

#[test]
fn deny_rules_and_reasons() {
    let p = policy();
    let none: Vec<String> = vec![];
    let sql = plan("azure", "azure.azure-sql-12-0", "basic", &none, true);
    let protected = json!({"platform": "kubernetes", "namespace": "protected-finance"});
    let open = json!({"platform": "kubernetes", "namespace": "team-a"});
    let cases: Vec<(CallFacts<'_>, Option<&str>)> = vec![
        (
            call("k8s-dev", Operation::Provision, "i", sql, None, None),
            Some("no-sql-from-dev"),
        ),
        (call("k8s-dev", Operation::Bind, "i", sql, None, None), None),
        (call("k8s-prod", Operation::Provision, "i", sql, None, None), None),
        (
            call(
                "k8s-prod",
                Operation::Deprovision,
                "i",
                sql,
                Some(&protected),
                None,
            ),
            Some("no-deletes-in-protected-namespaces"),
        ),
        (
            call("k8s-prod", Operation::Unbind, "i", sql, Some(&protected), None),
            Some("no-deletes-in-protected-namespaces"),
        ),
        (
            call("k8s-prod", Operation::Deprovision, "i", sql, Some(&open), None),
            None,
        ),
        (
            call("k8s-prod", Operation::Deprovision, "i", sql, None, None),
            None,
        ),
    ];
    for (facts, rule) in cases {
        let denial = p.denial(&facts);
        assert_eq!(
            denial.as_ref().map(|d| d.rule.as_str()),
            rule,
            "{} {:?}",
            facts.platform,
            facts.operation
        );
        if let Some(d) = denial {
            assert_eq!(d.kind, DenialKind::Forbidden);
            assert!(!d.reason.is_empty());
        }
    }
    let admitted = p
        .admit(&call("k8s-dev", Operation::Provision, "i", sql, None, None))
        .unwrap_err();
    assert_eq!(
        admitted.reason,
        "SQL databases are provisioned from production clusters only"
    );
    assert!(
        admitted.explanation.0.iter().any(|l| l.contains("visible")),
        "{:?}",
        admitted.explanation
    );
    let hidden = p
        .admit(&call("cf", Operation::Provision, "i", sql, None, None))
        .unwrap_err();
    assert_eq!(hidden.rule, "cf-hides-the-rest");
}

#[test]
fn placement_by_parameters_context_platform_and_default() {
    let p = policy();
    let mysql = p.offering("mysql").unwrap();
    let none: Vec<String> = vec![];
    let logical = plan("gateway", "mysql", "small", &none, true);
    let eu: Map<String, Value> = json!({"region": "eu-north"}).as_object().unwrap().clone();
    let us: Map<String, Value> = json!({"region": "us-east-1"}).as_object().unwrap().clone();
    let team_b = json!({"platform": "kubernetes", "namespace": "team-b-api"});
    let team_a = json!({"platform": "kubernetes", "namespace": "team-a"});
    let all = |_: &str| true;
    let cases: Vec<(CallFacts<'_>, &str, &str, &str)> = vec![
        (
            call(
                "k8s-dev",
                Operation::Provision,
                "i1",
                logical,
                Some(&team_a),
                Some(&eu),
            ),
            "eu-region",
            "azure",
            "basic",
        ),
        (
            call(
                "k8s-dev",
                Operation::Provision,
                "i1",
                logical,
                Some(&team_b),
                Some(&eu),
            ),
            "eu-region",
            "azure",
            "basic",
        ),
        (
            call(
                "k8s-dev",
                Operation::Provision,
                "i1",
                logical,
                Some(&team_b),
                Some(&us),
            ),
            "team-b",
            "aws",
            "dev",
        ),
        (
            call(
                "k8s-dev",
                Operation::Provision,
                "i1",
                logical,
                Some(&team_b),
                None,
            ),
            "team-b",
            "aws",
            "dev",
        ),
        (
            call(
                "k8s-dev",
                Operation::Provision,
                "i1",
                logical,
                Some(&team_a),
                None,
            ),
            "default",
            "azure",
            "basic",
        ),
        (
            call("cf", Operation::Provision, "i1", logical, None, None),
            "default",
            "azure",
            "basic",
        ),
    ];
    for (facts, rule, broker, upstream_plan) in cases {
        let placed = p.place(mysql, "small", &facts, &all).unwrap();
        assert_eq!(
            (placed.rule.as_str(), placed.broker.as_str(), placed.plan.as_str()),
            (rule, broker, upstream_plan)
        );
    }
    let large = p
        .place(
            mysql,
            "large",
            &call("k8s-dev", Operation::Provision, "i", logical, Some(&team_b), None),
            &all,
        )
        .unwrap();
    assert_eq!(
        (large.service.as_str(), large.plan.as_str()),
        ("rdsmysql", "production")
    );
}

#[test]
fn failover_skips_unhealthy_brokers_in_order() {
    let p = policy();
    let mysql = p.offering("mysql").unwrap();
    let none: Vec<String> = vec![];
    let logical = plan("gateway", "mysql", "small", &none, true);
    let facts = call("cf", Operation::Provision, "i1", logical, None, None);
    let azure_down = |b: &str| b != "azure";
    let placed = p.place(mysql, "small", &facts, &azure_down).unwrap();
    assert_eq!(placed.broker, "gcp");
    assert!(
        placed
            .explanation
            .0
            .iter()
            .any(|l| l.contains("azure skipped: unhealthy"))
    );
    let all_down = |_: &str| false;
    let denial = p.place(mysql, "small", &facts, &all_down).unwrap_err();
    assert_eq!(
        (denial.kind, denial.rule.as_str()),
        (DenialKind::Unavailable, "default")
    );
    // A rule with one candidate does not fall through to the next rule when it is down.
    let eu: Map<String, Value> = json!({"region": "westeurope"}).as_object().unwrap().clone();
    let facts = call("cf", Operation::Provision, "i1", logical, None, Some(&eu));
    assert_eq!(
        p.place(mysql, "small", &facts, &azure_down).unwrap_err().kind,
        DenialKind::Unavailable
    );
}

#[test]
fn weights_are_stable_per_instance_and_roughly_proportional() {
    let p = policy();
    let mysql = p.offering("mysql").unwrap();
    let none: Vec<String> = vec![];
    let logical = plan("gateway", "mysql", "small", &none, true);
    let all = |_: &str| true;
    let mut counts = std::collections::BTreeMap::new();
    let ids: Vec<String> = (0..4000).map(|i| format!("instance-{i}")).collect();
    for id in &ids {
        let facts = call("k8s-prod", Operation::Provision, id, logical, None, None);
        let first = p.place(mysql, "small", &facts, &all).unwrap();
        let again = p.place(mysql, "small", &facts, &all).unwrap();
        assert_eq!(first, again, "a retry lands on the same broker");
        *counts.entry(first.broker).or_insert(0) += 1;
    }
    let azure = counts.get("azure").copied().unwrap_or(0);
    let gcp = counts.get("gcp").copied().unwrap_or(0);
    assert_eq!(
        counts.get("aws"),
        None,
        "an unweighted candidate is failover only"
    );
    assert!(
        (2800..3200).contains(&azure) && (800..1200).contains(&gcp),
        "{counts:?}"
    );

    // Losing gcp moves only gcp's instances (to azure); azure's stay put.
    let gcp_down = |b: &str| b != "gcp";
    for id in ids.iter().take(500) {
        let facts = call("k8s-prod", Operation::Provision, id, logical, None, None);
        let before = p.place(mysql, "small", &facts, &all).unwrap().broker;
        let after = p.place(mysql, "small", &facts, &gcp_down).unwrap().broker;
        if before == "azure" {
            assert_eq!(after, "azure");
        } else {
            assert_eq!(
                after, "azure",
                "gcp's instances move to the other weighted candidate"
            );
        }
    }
    // With every weighted candidate down, the unweighted one takes over.
    let only_aws = |b: &str| b == "aws";
    let facts = call("k8s-prod", Operation::Provision, "x", logical, None, None);
    assert_eq!(p.place(mysql, "small", &facts, &only_aws).unwrap().broker, "aws");
}

#[test]
fn plan_changes_map_within_the_same_broker() {
    let p = policy();
    let mysql = p.offering("mysql").unwrap();
    let cases = [
        ("azure", "azure-mysql-5-7", "large", Some("standard")),
        ("aws", "rdsmysql", "large", Some("production")),
        ("gcp", "google-cloudsql-mysql", "small", Some("db-f1")),
        ("aws", "azure-mysql-5-7", "large", None),
        ("azure", "azure-mysql-5-7", "huge", None),
    ];
    for (broker, service, plan, want) in cases {
        assert_eq!(
            p.remap_plan(mysql, broker, service, plan).as_deref(),
            want,
            "{broker} {plan}"
        );
    }
}

#[test]
fn parameter_defaults_forced_allowed_and_forbidden() {
    let p = policy();
    let none: Vec<String> = vec![];
    let s3 = plan("aws", "aws.s3", "standard", &none, true);
    let mysql = plan("gateway", "mysql", "small", &none, true);
    let context = json!({"platform": "kubernetes", "namespace": "team-a",
                         "namespace_annotations": {"example.com/cost-center": "cc-42"}});
    let bare = json!({"platform": "kubernetes", "namespace": "team-a"});
    let given = |v: Value| v.as_object().unwrap().clone();

    // (platform, operation, plan, context, parameters) → Ok(expected parameters) or Err(rule)
    type Case<'a> = (
        &'a str,
        Operation,
        PlanFacts<'a>,
        Option<&'a Value>,
        Option<Map<String, Value>>,
        Result<Value, &'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "k8s-prod",
            Operation::Provision,
            s3,
            Some(&context),
            None,
            Ok(json!({"cost_center": "cc-42", "owner": "platform-team", "encrypted": true})),
        ),
        (
            "k8s-prod",
            Operation::Provision,
            s3,
            Some(&bare),
            None,
            Ok(json!({"owner": "platform-team", "encrypted": true})),
        ),
        (
            "k8s-prod",
            Operation::Provision,
            s3,
            Some(&context),
            Some(given(json!({"cost_center": "mine", "encrypted": false}))),
            Ok(json!({"cost_center": "mine", "encrypted": true, "owner": "platform-team"})),
        ),
        (
            "cf",
            Operation::Provision,
            s3,
            None,
            None,
            Ok(json!({"encrypted": true})),
        ),
        (
            "cf",
            Operation::Provision,
            plan("azure", "azure.x", "p", &none, true),
            None,
            None,
            Err("no-rule"),
        ),
        (
            "cf",
            Operation::Provision,
            mysql,
            None,
            Some(given(json!({"region": "eu-west"}))),
            Ok(json!({"region": "eu-west", "encrypted": true})),
        ),
        (
            "cf",
            Operation::Provision,
            mysql,
            None,
            Some(given(json!({"region": "ap-south"}))),
            Err("regions"),
        ),
        (
            "cf",
            Operation::Provision,
            mysql,
            None,
            Some(given(json!({"region": 7}))),
            Err("regions"),
        ),
        (
            "cf",
            Operation::Update,
            s3,
            None,
            Some(given(json!({"public_access": true}))),
            Err("no-public"),
        ),
        (
            "cf",
            Operation::Provision,
            s3,
            None,
            Some(given(json!({"firewall_open": "0.0.0.0/0"}))),
            Err("no-public"),
        ),
        (
            "cf",
            Operation::Deprovision,
            s3,
            None,
            Some(given(json!({"public_access": true}))),
            Err("no-rule"),
        ),
        (
            "k8s-dev",
            Operation::Bind,
            s3,
            None,
            None,
            Ok(json!({"role": "readonly"})),
        ),
        ("k8s-prod", Operation::Bind, s3, None, None, Err("no-rule")),
    ];
    for (platform, operation, facts_plan, context, parameters, want) in cases {
        let facts = call(platform, operation, "i", facts_plan, context, parameters.as_ref());
        let result = p.parameters(&facts);
        match (result, want) {
            (Ok(out), Ok(expected)) => {
                assert_eq!(
                    Value::Object(out.parameters.unwrap_or_default()),
                    expected,
                    "{platform} {operation:?}"
                );
                assert!(
                    !out.explanation.0.iter().any(|l| l.contains("cc-42")),
                    "explanations carry no values"
                );
            }
            (Ok(out), Err("no-rule")) => {
                assert_eq!(out.parameters, parameters, "untouched");
                assert!(out.explanation.0.is_empty());
            }
            (Err(denial), Err(rule)) => {
                assert_eq!(denial.rule, rule);
                let kind = if rule == "regions" {
                    DenialKind::Invalid
                } else {
                    DenialKind::Forbidden
                };
                assert_eq!(denial.kind, kind);
                assert!(!denial.reason.contains("0.0.0.0"), "reasons carry no values");
            }
            (got, want) => panic!("{platform} {operation:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn facts_reach_into_context_and_parameters() {
    let none: Vec<String> = vec![];
    let context = json!({"platform": "cloudfoundry", "organization_name": "acme",
                         "namespace_annotations": {"example.com/team": "blue"}, "labels": {"tier": {"x": 1}}});
    let parameters = json!({"region": "eu-west", "size": 3, "nested": {"deep": true}})
        .as_object()
        .unwrap()
        .clone();
    let facts = call(
        "cf",
        Operation::Bind,
        "inst-9",
        plan("aws", "aws.s3", "std", &none, true),
        Some(&context),
        Some(&parameters),
    );
    for (path, want) in [
        ("platform", Some("cf")),
        ("operation", Some("bind")),
        ("instance_id", Some("inst-9")),
        ("service", Some("aws.s3")),
        ("plan", Some("std")),
        ("broker", Some("aws")),
        ("context.platform", Some("cloudfoundry")),
        ("context.organization_name", Some("acme")),
        ("context.namespace_annotations.example.com/team", Some("blue")),
        ("context.labels.tier.x", Some("1")),
        ("context.labels.tier", None),
        ("context.missing", None),
        ("parameters.region", Some("eu-west")),
        ("parameters.size", Some("3")),
        ("parameters.nested.deep", Some("true")),
        ("parameters.none", None),
        ("unknown", None),
    ] {
        assert_eq!(facts.fact(path).as_deref(), want, "{path}");
    }
}

#[test]
fn schema_validation_of_parameters() {
    let draft4 = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "required": ["location"],
        "properties": {
            "location": {"type": "string", "enum": ["eastus", "westeurope"]},
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "password": {"type": "string", "minLength": 12}
        },
        "additionalProperties": false
    });
    let schema = Schema::compile(&draft4).unwrap();
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (json!({"location": "eastus"}), Ok(())),
        (json!({"location": "eastus", "size": 10}), Ok(())),
        (json!({}), Err("location")),
        (json!({"location": "mars"}), Err("/location")),
        (json!({"location": "eastus", "size": 11}), Err("/size")),
        (json!({"location": "eastus", "size": "3"}), Err("/size")),
        (json!({"location": "eastus", "extra": 1}), Err("extra")),
        (json!({"location": "eastus", "password": "short-secret"}), Ok(())),
        (
            json!({"location": "eastus", "password": "tiny-pw"}),
            Err("/password"),
        ),
    ];
    for (parameters, want) in cases {
        match (schema.check(Some(&parameters)), want) {
            (Ok(()), Ok(())) => {}
            (Err(errors), Err(mention)) => {
                assert!(
                    errors.iter().any(|e| e.contains(mention)),
                    "{parameters}: {errors:?}"
                );
                assert!(
                    !errors.iter().any(|e| e.contains("tiny-pw") || e.contains("mars")),
                    "values are masked: {errors:?}"
                );
            }
            (got, want) => panic!("{parameters}: got {got:?}, want {want:?}"),
        }
    }
    // A draft-06 schema (AWS) with its non-standard keys and string defaults compiles and checks.
    let draft6 = json!({"$schema": "http://json-schema.org/draft-06/schema#", "type": "object",
        "properties": {"AllocatedStorage": {"type": "integer", "default": "5", "prescribed": true}},
        "openshift_form_definition": []});
    let schema = Schema::compile(&draft6).unwrap();
    assert!(schema.check(None).is_ok());
    assert!(schema.check(Some(&json!({"AllocatedStorage": 20}))).is_ok());
    assert!(schema.check(Some(&json!({"AllocatedStorage": "x"}))).is_err());
    // Where plans keep their schemas; GCP's null update schema checks nothing.
    let gcp_plan = json!({"schemas": {"service_instance": {"create": {"parameters": draft4}, "update": {"parameters": null}}}});
    assert!(schema::plan_schema(&gcp_plan, Operation::Provision).is_some());
    assert!(schema::plan_schema(&gcp_plan, Operation::Update).is_none());
    assert!(schema::plan_schema(&gcp_plan, Operation::Bind).is_none());
}

#[test]
fn real_fixture_schemas_compile() {
    for file in [
        "azure-osba-catalog.json",
        "aws-servicebroker-catalog.json",
        "gcp-service-broker-catalog.json",
    ] {
        let path = format!("{}/../fixtures/catalogs/{file}", env!("CARGO_MANIFEST_DIR"));
        let catalog: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let mut compiled = 0;
        for service in catalog["services"].as_array().unwrap() {
            for plan in service["plans"].as_array().unwrap() {
                for op in [Operation::Provision, Operation::Update, Operation::Bind] {
                    if let Some(s) = schema::plan_schema(plan, op) {
                        Schema::compile(s).unwrap_or_else(|e| panic!("{file} {}: {e}", plan["name"]));
                        compiled += 1;
                    }
                }
            }
        }
        assert!(compiled > 50, "{file}: {compiled}");
    }
}

#[test]
fn a_bad_file_reports_every_problem() {
    let text = r#"
visibility:
  default: sometimes
  rules:
    - {name: a, effect: hide}
    - {name: a, effect: maybe}
    - {effect: show}
offerings:
  - name: My_SQL
    plans: [{name: small}, {name: small}]
    placement:
      - name: p1
        when: {color: [red]}
        candidates:
          - {broker: azure, plans: {small: basic, huge: x}}
  - name: empty
parameters:
  - {name: nothing}
  - {name: bad-op, operations: [destroy], force: {a: 1}}
  - {name: tmpl, defaults: {x: "{weather.today}"}}
deny:
  - {name: d1}
"#;
    let problems = match Policy::parse(text, osb_config::FileFormat::Yaml, "policy.yaml") {
        Err(PolicyError::Invalid(problems)) => problems,
        Ok(_) => panic!("invalid policy accepted"),
    };
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for want in [
        "policy.yaml: visibility.default: expected visible or hidden",
        "policy.yaml: visibility.rules[1].name: rule name \"a\" is used twice",
        "policy.yaml: visibility.rules[1].effect: expected show or hide",
        "policy.yaml: visibility.rules[2].name: every rule needs a name",
        "policy.yaml: offerings[0].name: expected lower-case",
        "policy.yaml: offerings[0].plans[1].name: plan names must be non-empty and unique",
        "policy.yaml: offerings[0].placement[0].when.color: unknown fact",
        "policy.yaml: offerings[0].placement[0].candidates[0].service: is required",
        "policy.yaml: offerings[0].placement[0].candidates[0].plans.huge: \"huge\" is not a plan",
        "policy.yaml: offerings[1].plans: an offering needs at least one plan",
        "policy.yaml: offerings[1].placement: an offering needs at least one placement rule",
        "policy.yaml: parameters[0]: a parameter rule needs defaults, force, allowed or forbid",
        "policy.yaml: parameters[1].operations: unknown operation \"destroy\"",
        "policy.yaml: parameters[2].defaults.x: unknown fact \"weather.today\"",
        "policy.yaml: deny[0].reason: a deny rule needs a reason",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(want)),
            "missing {want:?} in {text:#?}"
        );
    }
    let unknown = match Policy::parse("visiblity: {}\n", osb_config::FileFormat::Yaml, "p.yaml") {
        Err(PolicyError::Invalid(problems)) => problems,
        Ok(_) => panic!("typo accepted"),
    };
    assert_eq!(unknown[0].to_string(), "p.yaml: visiblity: unknown key");
    let brokers = policy().check_names(&["k8s-prod", "k8s-dev", "cf"], &["azure", "aws"], "policy.yaml");
    assert!(
        brokers.iter().all(|p| p.message.contains("\"gcp\"")) && brokers.len() == 2,
        "{brokers:?}"
    );
}

#[test]
fn an_empty_policy_allows_everything() {
    let p = Policy::default();
    let none: Vec<String> = vec![];
    let facts = call(
        "anyone",
        Operation::Provision,
        "i",
        plan("aws", "aws.s3", "a", &none, false),
        None,
        None,
    );
    assert!(p.admit(&facts).is_ok());
    let out = p.parameters(&facts).unwrap();
    assert_eq!(out.parameters, None);
    assert!(p.offerings.is_empty() && p.schema_validation);
    assert!(Policy::parse("", osb_config::FileFormat::Yaml, "p").is_ok());
}

#[test]
fn the_readme_example_policy_is_valid() {
    let path = format!("{}/../config/examples/policy.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let p = Policy::parse(&text, osb_config::FileFormat::Yaml, "policy.yaml").unwrap();
    assert_eq!(p.offerings.len(), 1);
    assert!(
        p.check_names(
            &["k8s-prod", "k8s-dev", "cf"],
            &["azure", "aws", "gcp"],
            "policy.yaml"
        )
        .is_empty()
    );
}

#[test]
fn rate_limits_by_name() {
    let text = r#"
limits:
  platforms:
    - {name: k8s-prod, catalog_per_sec: 20, calls_per_sec: 5, calls_burst: 10}
    - {name: "k8s-*", calls_per_sec: 1}
  brokers:
    - {name: azure, calls_per_sec: 3}
"#;
    let p = Policy::parse(text, osb_config::FileFormat::Yaml, "p.yaml").unwrap();
    let prod = p.limits.platform("k8s-prod");
    assert_eq!(
        prod.catalog,
        Some(Rate {
            per_sec: 20,
            burst: 20
        })
    );
    assert_eq!(
        prod.calls,
        Some(Rate {
            per_sec: 5,
            burst: 10
        })
    );
    assert_eq!(
        p.limits.platform("k8s-dev"),
        PlatformLimit {
            catalog: None,
            calls: Some(Rate { per_sec: 1, burst: 1 })
        }
    );
    assert_eq!(p.limits.platform("cf"), PlatformLimit::default());
    assert_eq!(p.limits.broker("azure"), Some(Rate { per_sec: 3, burst: 3 }));
    assert_eq!(p.limits.broker("aws"), None);
    let bad =
        "limits:\n  platforms:\n    - {catalog_per_sec: 0}\n  brokers:\n    - {name: x, calls_burst: 3}\n";
    let Err(PolicyError::Invalid(problems)) = Policy::parse(bad, osb_config::FileFormat::Yaml, "p.yaml")
    else {
        panic!("bad limits accepted")
    };
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("p.yaml: limits.platforms[0].name: is required")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("p.yaml: limits.brokers[0]: a burst needs a rate")),
        "{text:?}"
    );
}

/// Rules indexed by platform decide exactly as the whole list, in order, would: literal names,
/// several names, globs and rules without platforms mixed, first match winning.
#[test]
fn indexed_rules_decide_as_the_whole_list() {
    let yaml = r#"
visibility:
  rules:
    - {name: r0, platforms: [k8s-prod], services: ["aws.*"], effect: hide}
    - {name: r1, services: ["*.s3"], effect: show}
    - {name: r2, platforms: [k8s-prod, cf], plans: [big], effect: hide}
    - {name: r3, platforms: ["k8s-*"], brokers: [gcp], effect: hide}
    - {name: r4, platforms: [cf], effect: hide}
    - {name: r5, platforms: [k8s-dev], effect: show}
deny:
  - {name: d0, platforms: [cf], operations: [provision], services: ["azure.*"], reason: no}
  - {name: d1, platforms: ["k8s-*"], plans: [big], reason: no}
  - {name: d2, services: ["gcp.*"], reason: no}
  - {name: d3, platforms: [k8s-prod], reason: no}
"#;
    let p = Policy::parse(yaml, osb_config::FileFormat::Yaml, "policy.yaml").unwrap();
    let none: Vec<String> = vec![];
    for platform in ["k8s-prod", "k8s-dev", "k8s-staging", "cf", "other"] {
        for (broker, service) in [
            ("aws", "aws.s3"),
            ("aws", "aws.rds"),
            ("gcp", "gcp.sql"),
            ("azure", "azure.db"),
        ] {
            for plan_name in ["small", "big"] {
                let facts = plan(broker, service, plan_name, &none, true);
                let linear = p
                    .visibility
                    .iter()
                    .find(|r| r.selector.matches(platform, &facts))
                    .map(|r| (r.show, r.name.clone()));
                let indexed = p.visibility(platform, &facts);
                assert_eq!(
                    indexed.rule.map(|name| (indexed.visible, name)),
                    linear,
                    "{platform} {service}/{plan_name}"
                );
                let c = call(platform, Operation::Provision, "i", facts, None, None);
                let linear = p
                    .deny
                    .iter()
                    .find(|r| {
                        r.operations
                            .as_ref()
                            .is_none_or(|ops| ops.contains(&Operation::Provision))
                            && r.selector.matches(platform, &c.plan)
                    })
                    .map(|r| r.name.clone());
                assert_eq!(
                    p.denial(&c).map(|d| d.rule),
                    linear,
                    "{platform} {service}/{plan_name}"
                );
            }
        }
    }
}

#[test]
fn quotas_name_the_counts_a_new_instance_or_binding_joins() {
    let text = r#"
quotas:
  - name: three-per-namespace
    platforms: ["k8s-*"]
    per: [platform, context.namespace]
    limit: 3
    reason: each namespace keeps three services
  - name: mysql-everywhere
    tags: [mysql]
    limit: 100
    reason: licences
  - name: keys-per-namespace
    resource: bindings
    when: {context.namespace: ["team-*"]}
    per: [context.namespace]
    limit: 10
    reason: ten credentials per team
"#;
    let policy = Policy::parse(text, osb_config::FileFormat::Yaml, "q.yaml").unwrap();
    let tags = vec!["mysql".to_owned()];
    let context = json!({"platform": "kubernetes", "namespace": "team-a"});
    let mysql = plan("azure", "azure.mysql", "basic", &tags, true);
    let provision = call(
        "k8s-prod",
        Operation::Provision,
        "i1",
        mysql,
        Some(&context),
        None,
    );
    let holds = policy.quotas_for(&provision);
    let names: Vec<&str> = holds.iter().map(|h| h.quota.as_str()).collect();
    assert_eq!(names, ["three-per-namespace", "mysql-everywhere"]);
    assert_eq!(holds[0].limit, 3);
    assert_eq!(
        holds[0].bucket_text(),
        "platform=k8s-prod, context.namespace=team-a"
    );
    assert_eq!(quota_of_key(&holds[0].key), "three-per-namespace");
    assert_eq!(holds[1].bucket_text(), "");

    // Another namespace is another count; a platform without a namespace counts as "(none)".
    let other_ns = json!({"namespace": "team-b"});
    let other = call(
        "k8s-prod",
        Operation::Provision,
        "i2",
        mysql,
        Some(&other_ns),
        None,
    );
    assert_ne!(policy.quotas_for(&other)[0].key, holds[0].key);
    let bare = call("k8s-prod", Operation::Provision, "i3", mysql, None, None);
    assert_eq!(
        policy.quotas_for(&bare)[0].bucket_text(),
        "platform=k8s-prod, context.namespace=(none)"
    );
    // Values cannot forge another bucket's key.
    let tricky = json!({"namespace": "a\",\"b"});
    let forged = call("k8s-prod", Operation::Provision, "i4", mysql, Some(&tricky), None);
    assert_ne!(policy.quotas_for(&forged)[0].key, holds[0].key);
    // A long value keeps a bounded key.
    let long = json!({"namespace": "n".repeat(5000)});
    let long_call = call("k8s-prod", Operation::Provision, "i5", mysql, Some(&long), None);
    assert!(policy.quotas_for(&long_call)[0].key.len() < 600);

    // Binding quotas apply to binds only; instance quotas not to binds.
    let bind = call("k8s-prod", Operation::Bind, "i1", mysql, Some(&context), None);
    let binds: Vec<String> = policy.quotas_for(&bind).into_iter().map(|h| h.quota).collect();
    assert_eq!(binds, ["keys-per-namespace"]);
    let cf = call("cf", Operation::Provision, "i6", mysql, None, None);
    assert_eq!(policy.quotas_for(&cf).len(), 1);

    let bad = r#"
quotas:
  - {name: q1, per: [operation, weather, parameters.size], resource: disks, reason: r}
  - {name: q2, limit: 1}
"#;
    let problems = Policy::parse(bad, osb_config::FileFormat::Yaml, "q.yaml")
        .unwrap_err()
        .to_string();
    for expected in [
        "quotas[0].per",
        "quotas[0].resource",
        "quotas[0].limit",
        "quotas[1].reason",
    ] {
        assert!(problems.contains(expected), "{expected} missing from {problems}");
    }
}
