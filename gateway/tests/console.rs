//! The console (`/ui` on the admin listener) in a real headless Chromium, against a gateway in
//! front of two openbrokerapi brokers serving the real OSBA and AWS catalogs: every page loads with
//! what it should show; a hidden service's reason is what `explain` says; a viewer sees no abandon
//! button and gets 403 when posting anyway; an operator abandons a stuck instance through the pages
//! and the audit page shows it; an originating identity holding markup and script renders as text;
//! the audit log updates live; the pages read with JavaScript off. Screenshots of each page go to
//! `$OSB_CONSOLE_SCREENSHOTS` (the README's come from `OSB_CONSOLE_SCREENSHOTS=docs/console`), else
//! to the build's temp folder.
//!
//! Plain-HTTP checks (escaping in the bytes, headers, 401, cross-site posts) run without a browser.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::browser::{self, Browser};
use crate::support::fixture_path;
use crate::support::gateway::{BEARER_TOKEN, TestGateway, platforms_yaml};
use crate::support::obapi::ObapiBroker;
use crate::support::osb::{Query, instance_path};
use crate::support::{eventually, http};

const OPERATOR: (&str, &str) = ("olga", "operator-pw-4");
const VIEWER: (&str, &str) = ("vera", "viewer-pw-1");

/// A user name (from a platform's originating identity) that would run script if printed as HTML.
const HOSTILE_USER: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">mallory"#;

/// The policy: platform `k8s-prod` does not see the aws broker's services.
const POLICY: &str = "visibility:\n  rules:\n    - {name: prod-without-aws, platforms: [k8s-prod], brokers: [aws], effect: hide}\n";

struct Console {
    gw: TestGateway,
    _azure: ObapiBroker,
    _aws: ObapiBroker,
    _dir: tempfile::TempDir,
}

/// Azure (provisions stay in progress: stuck) and AWS brokers, the policy, two admin users.
async fn console() -> Console {
    let azure = ObapiBroker::start_with_polls(&fixture_path("azure-osba-catalog.json"), 100_000).await;
    let aws = ObapiBroker::start(&fixture_path("aws-servicebroker-catalog.json")).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let users = format!(
        "  users:\n    - name: {}\n      role: operator\n      password: {}\n    - name: {}\n      role: viewer\n      password: {}\n",
        OPERATOR.0, OPERATOR.1, VIEWER.0, VIEWER.1
    );
    let yaml = format!(
        "{}policy_file: {}\nbrokers:\n{}{}",
        platforms_yaml(),
        policy.display(),
        azure.config_entry("azure"),
        aws.config_entry("aws"),
    );
    let gw = TestGateway::start_with_admin(&users, &yaml, &[]).await;
    gw.ready_catalog().await;
    Console {
        gw,
        _azure: azure,
        _aws: aws,
        _dir: dir,
    }
}

/// The first service of `broker` (by its namespaced name) and its first plan: (service, plan) as
/// `{"id", "name"}` objects, from the catalog platform `cf` sees (everything).
async fn first_plan_of(gw: &TestGateway, broker: &str) -> (Value, Value) {
    let catalog = gw.osb().bearer(BEARER_TOKEN).ready_catalog().await.body;
    let service = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(&format!("{broker}.")))
        .unwrap_or_else(|| panic!("no {broker} service in {catalog}"))
        .clone();
    let plan = service["plans"][0].clone();
    (service, plan)
}

/// A provision from `k8s-prod` whose originating identity names `user`: its status.
async fn provision_as(gw: &TestGateway, instance: &str, service: &Value, plan: &Value, user: &str) -> u16 {
    let identity = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&json!({"username": user, "uid": "u-1"})).unwrap());
    gw.osb()
        .request(
            reqwest::Method::PUT,
            &format!(
                "{}{}",
                instance_path(instance),
                Query::none().incomplete().render()
            ),
        )
        .header(
            "X-Broker-API-Originating-Identity",
            format!("kubernetes {identity}"),
        )
        .json(&json!({
            "service_id": service["id"], "plan_id": plan["id"],
            "organization_guid": "o", "space_guid": "s",
            "context": {"platform": "kubernetes", "namespace": "team-a"},
        }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("OSB_CONSOLE_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
        |d| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(d),
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `GET` an admin-listener path as `who`: status, headers and body text.
async fn get_as(
    gw: &TestGateway,
    path: &str,
    who: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = http().get(gw.admin_url(path));
    if let Some((user, password)) = who {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn the_console_in_a_browser_shows_each_page_and_an_operator_abandons_a_stuck_instance() {
    if !browser::available() {
        panic!(
            "chromium and chromedriver are needed (apt install chromium chromium-driver, as .ci/run does)"
        );
    }
    let console = console().await;
    let gw = &console.gw;
    let (azure_service, azure_plan) = first_plan_of(gw, "azure").await;
    let (aws_service, aws_plan) = first_plan_of(gw, "aws").await;
    assert_eq!(
        provision_as(gw, "stuck-1", &azure_service, &azure_plan, HOSTILE_USER).await,
        202
    );
    let shots = screenshots();
    let ui = |path: &str| gw.admin_url(path);

    let browser = Browser::start().await;
    browser.sign_in(Some(OPERATOR)).await;

    // Overview: both brokers as cards, the gateway's facts.
    browser.open(&ui("/ui")).await;
    let text = browser.text().await;
    assert!(browser.title().await.starts_with("Overview"), "{text}");
    for expected in ["azure", "aws", "healthy", "Replicas seen", "generation 1", "olga"] {
        assert!(text.contains(expected), "overview lacks {expected:?}:\n{text}");
    }
    browser.screenshot(&shots.join("overview.png")).await;

    // Marketplace of k8s-prod: the aws plan is hidden, with explain's reason.
    browser.open(&ui("/ui/marketplace?platform=k8s-prod")).await;
    let explained: Value = http()
        .post(gw.admin_url("/admin/explain"))
        .basic_auth(VIEWER.0, Some(VIEWER.1))
        .json(&json!({"platform": "k8s-prod", "operation": "provision",
            "body": {"service_id": aws_service["id"], "plan_id": aws_plan["id"]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let description = explained["refusal"]["description"].as_str().unwrap();
    assert!(description.contains("prod-without-aws"), "{explained}");
    let row = browser
        .run(
            "const name = arguments[0]; for (const s of document.querySelectorAll('section.service')) { if (s.querySelector('h2').textContent.startsWith(name + ' ')) { for (const tr of s.querySelectorAll('tbody tr')) { if (tr.querySelector('th').textContent.startsWith(arguments[1])) { return tr.textContent; } } } } return null;",
            json!([aws_service["name"], aws_plan["name"]]),
        )
        .await;
    let row = row
        .as_str()
        .unwrap_or_else(|| panic!("no row of {aws_service} / {aws_plan}"));
    assert!(row.contains("hidden"), "{row}");
    assert!(
        row.contains(description),
        "the marketplace's reason {row:?} is not explain's {description:?}"
    );
    assert!(browser.text().await.contains("goes to azure"));
    // Search by name as you type (the script) hides the other services.
    browser.fill("input[name=q]", "s3").await;
    let shown = browser
        .run(
            "return [...document.querySelectorAll('section.service')].filter(s => !s.hidden).length;",
            json!([]),
        )
        .await;
    let total = browser
        .run(
            "return document.querySelectorAll('section.service').length;",
            json!([]),
        )
        .await;
    assert!(
        shown.as_u64().unwrap() >= 1 && shown.as_u64() < total.as_u64(),
        "{shown} of {total}"
    );
    browser.screenshot(&shots.join("marketplace.png")).await;

    // Instances: the stuck one, creating, with its provision in flight.
    browser.open(&ui("/ui/instances?broker=azure")).await;
    let text = browser.text().await;
    assert!(
        text.contains("stuck-1")
            && text.contains("creating")
            && text.contains("provision (accepted, polling)"),
        "{text}"
    );
    browser.screenshot(&shots.join("instances.png")).await;

    // Its page: history with the originating user printed as text, never run.
    browser.open(&ui("/ui/instances/stuck-1")).await;
    let text = browser.text().await;
    assert!(
        text.contains(HOSTILE_USER),
        "the user name is not shown as text:\n{text}"
    );
    let pwned = browser.run("return window.pwned === undefined;", json!([])).await;
    assert_eq!(pwned, json!(true), "markup from an originating identity ran");
    assert!(
        browser.find("a.button.danger").await.is_some(),
        "an operator sees the abandon button"
    );
    browser.screenshot(&shots.join("instance.png")).await;

    // Policy: the file, and the explain form gives explain's answer.
    browser.open(&ui("/ui/policy")).await;
    assert!(browser.text().await.contains("prod-without-aws"));
    browser
        .fill("#service", aws_service["name"].as_str().unwrap())
        .await;
    browser.fill("#plan", aws_plan["name"].as_str().unwrap()).await;
    browser.click("form.act button[type=submit]").await;
    let outcome = browser.wait_for(".outcome").await;
    assert!(
        outcome.contains("Refused") && outcome.contains(description),
        "{outcome}"
    );
    browser.screenshot(&shots.join("policy.png")).await;

    // Catalog changes: nothing held; the dry-run diff fetched on demand finds no change.
    browser.open(&ui("/ui/catalog")).await;
    assert!(browser.text().await.contains("No plan is held."));
    browser.click("form button[type=submit]").await;
    let text = eventually("the dry-run diff", Duration::from_secs(10), || async {
        Some(browser.text().await).filter(|t| t.contains(" added, "))
    })
    .await;
    assert!(
        text.contains("0 added, 0 removed") && text.contains("No change."),
        "{text}"
    );
    browser.screenshot(&shots.join("catalog.png")).await;

    // A viewer: no abandon button, and 403 when posting anyway (or asking for the form).
    browser.sign_in(Some(VIEWER)).await;
    browser.open(&ui("/ui/instances/stuck-1")).await;
    assert!(browser.text().await.contains("stuck-1"));
    assert!(
        browser.find("a.button.danger").await.is_none(),
        "a viewer sees the abandon button"
    );
    let posted = browser
        .run(
            "const r = await fetch('/ui/instances/stuck-1/abandon', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'reason=because'}); return r.status;",
            json!([]),
        )
        .await;
    assert_eq!(posted, json!(403));
    browser.open(&ui("/ui/instances/stuck-1/abandon")).await;
    assert!(
        browser.title().await.starts_with("403"),
        "{}",
        browser.text().await
    );

    // The operator abandons it through the pages.
    browser.sign_in(Some(OPERATOR)).await;
    browser.open(&ui("/ui/instances/stuck-1")).await;
    browser.click("a.button.danger").await;
    browser.wait_for("section.confirm").await;
    let confirmation = browser.text().await;
    assert!(
        confirmation.contains("What will happen")
            && confirmation.contains("Upstream, at broker azure: nothing is sent"),
        "{confirmation}"
    );
    browser.screenshot(&shots.join("abandon.png")).await;
    browser.fill("#reason", "stuck in provisioning for days").await;
    browser.click("form.act button[type=submit]").await;
    browser.wait_for("p.notice").await;
    assert!(
        browser.url().await.contains("/ui/audit?instance_id=stuck-1"),
        "{}",
        browser.url().await
    );
    let audit = browser.text().await;
    assert!(audit.contains("Instance stuck-1 abandoned"), "{audit}");
    assert!(
        audit.contains("admin.abandon")
            && audit.contains("olga")
            && audit.contains("stuck in provisioning for days"),
        "{audit}"
    );
    let (status, _, _) = get_as(gw, "/admin/instances/stuck-1", Some(OPERATOR)).await;
    assert_eq!(status, 404, "the instance left the registry");

    // The audit log, live: a call made while the page is open shows up without a reload.
    browser.open(&ui("/ui/audit")).await;
    assert!(browser.text().await.contains(HOSTILE_USER));
    assert_eq!(
        provision_as(gw, "live-2", &azure_service, &azure_plan, "lena").await,
        202
    );
    eventually(
        "the new call on the open audit page",
        Duration::from_secs(15),
        || async { browser.text().await.contains("live-2").then_some(()) },
    )
    .await;
    browser.screenshot(&shots.join("audit.png")).await;
    let pwned = browser.run("return window.pwned === undefined;", json!([])).await;
    assert_eq!(
        pwned,
        json!(true),
        "markup from an originating identity ran in live rows"
    );

    // Bindings: none yet.
    browser.open(&ui("/ui/bindings")).await;
    assert!(browser.text().await.contains("No bindings match."));
}

#[tokio::test]
async fn the_console_reads_with_javascript_off() {
    let console = console().await;
    let gw = &console.gw;
    let (service, plan) = first_plan_of(gw, "azure").await;
    assert_eq!(provision_as(gw, "quiet-1", &service, &plan, "nora").await, 202);
    let browser = Browser::start_without_javascript().await;
    browser.sign_in(Some(VIEWER)).await;
    for (path, expected) in [
        ("/ui", "Upstream brokers"),
        ("/ui/marketplace?platform=k8s-prod", "prod-without-aws"),
        ("/ui/instances", "quiet-1"),
        ("/ui/instances/quiet-1", "nora"),
        ("/ui/audit", "quiet-1"),
        ("/ui/catalog", "No plan is held."),
        ("/ui/policy", "prod-without-aws"),
    ] {
        browser.open(&gw.admin_url(path)).await;
        let text = browser.text().await;
        assert!(
            text.contains(expected),
            "{path} without JavaScript lacks {expected:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn pages_escape_what_platforms_send_and_refuse_the_unauthenticated_and_other_sites() {
    let console = console().await;
    let gw = &console.gw;
    let (service, plan) = first_plan_of(gw, "azure").await;
    assert_eq!(
        provision_as(gw, "esc-1", &service, &plan, HOSTILE_USER).await,
        202
    );

    // The bytes: the name escaped, never markup.
    for path in ["/ui/audit", "/ui/instances/esc-1"] {
        let (status, headers, body) = get_as(gw, path, Some(VIEWER)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains("<script>window.pwned"),
            "{path} prints markup:\n{body}"
        );
        assert!(
            body.contains("&#60;script&#62;window.pwned") || body.contains("&lt;script&gt;window.pwned"),
            "{path}:\n{body}"
        );
        let csp = headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    }

    // No credentials: 401 with the Basic challenge (the browser asks), as an HTML page.
    let (status, headers, body) = get_as(gw, "/ui", None).await;
    assert_eq!(status, 401);
    assert!(
        headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert!(body.contains("admin credentials required"), "{body}");
    // The stylesheet and script are open (no secrets in them).
    let (status, _, css) = get_as(gw, "/ui/assets/console.css", None).await;
    assert_eq!(status, 200);
    assert!(css.contains("--fg"));

    // An operator's browser on another site posting to the console or the admin API: 403.
    for (path, content_type, body) in [
        (
            "/ui/instances/esc-1/abandon",
            "application/x-www-form-urlencoded",
            "reason=csrf",
        ),
        (
            "/admin/instances/esc-1/abandon",
            "text/plain",
            r#"{"reason": "csrf"}"#,
        ),
    ] {
        let response = http()
            .post(gw.admin_url(path))
            .basic_auth(OPERATOR.0, Some(OPERATOR.1))
            .header("Origin", "https://elsewhere.example")
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let (status, _, _) = get_as(gw, "/admin/instances/esc-1", Some(VIEWER)).await;
    assert_eq!(status, 200, "nothing was abandoned");

    // Bad filters are a 400 page, not a crash; unknown records a 404 page.
    let (status, _, body) = get_as(gw, "/ui/instances?state=melted", Some(VIEWER)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("melted"));
    let (status, _, _) = get_as(gw, "/ui/instances/nope", Some(VIEWER)).await;
    assert_eq!(status, 404);
}

/// A client that does not follow redirects (to see the 303 an action answers).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Posts a console form as `who`: status, `Location` and body.
async fn post_form(
    gw: &TestGateway,
    path: &str,
    who: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::support::osb::encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = no_redirects()
        .post(gw.admin_url(path))
        .basic_auth(who.0, Some(who.1))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

#[tokio::test]
async fn operators_confirm_held_plans_adopt_and_abandon_bindings_through_the_forms() {
    use crate::support::fake_broker::{FakeBroker, Reply};
    use crate::support::small_catalog::{Ids, small_catalog};

    let broker = FakeBroker::with_catalog(small_catalog()).await;
    broker.on("PUT", "/v2/service_instances/*", Reply::new(201, "{}"));
    broker.on(
        "PUT",
        "/v2/service_instances/*/service_bindings/*",
        Reply::new(201, r#"{"credentials": {"password": "binding-secret-1"}}"#),
    );
    let users = format!(
        "  users:\n    - name: {}\n      role: operator\n      password: {}\n    - name: {}\n      role: viewer\n      password: {}\n",
        OPERATOR.0, OPERATOR.1, VIEWER.0, VIEWER.1
    );
    let yaml = format!(
        "{}brokers:\n  - name: fb\n    url: {}\n    timeout_secs: 2\n    refresh_interval_secs: 3600\n",
        platforms_yaml(),
        broker.url()
    );
    let gw = TestGateway::start_with_admin(&users, &yaml, &[]).await;
    let ids = Ids::of(&gw.ready_catalog().await, "fb.db");
    let on_large =
        json!({"service_id": ids.service, "plan_id": ids.large, "context": {"platform": "kubernetes"}});
    assert_eq!(
        gw.osb()
            .provision("keep-me", Query::none(), &on_large)
            .await
            .status,
        201
    );

    // The upstream drops `large`: the dry-run diff says it would be held.
    let mut catalog: Value = serde_json::from_slice(&small_catalog()).unwrap();
    catalog["services"][0]["plans"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "large");
    broker.on(
        "GET",
        "/v2/catalog",
        Reply::new(200, serde_json::to_vec(&catalog).unwrap()),
    );
    let (status, _, page) = post_form(&gw, "/ui/catalog", VIEWER, &[]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("1 removed")
            && page.contains("1 plan(s) would be held")
            && page.contains("plan removed"),
        "{page}"
    );

    // Applied: held, with its live instance; only an operator is offered the confirmation.
    let refreshed = http()
        .post(gw.admin_url("/admin/brokers/fb/refresh"))
        .basic_auth(OPERATOR.0, Some(OPERATOR.1))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 202);
    let confirm_link = format!("/ui/catalog/confirm?id={}", ids.large);
    eventually("the plan is held", Duration::from_secs(10), || async {
        let (_, _, page) = get_as(&gw, "/ui/catalog", Some(OPERATOR)).await;
        page.contains(&confirm_link).then_some(())
    })
    .await;
    let (_, _, page) = get_as(&gw, "/ui/catalog", Some(VIEWER)).await;
    assert!(page.contains("large") && !page.contains(&confirm_link), "{page}");
    let (status, _, _) = get_as(&gw, &confirm_link, Some(VIEWER)).await;
    assert_eq!(status, 403);
    let (status, _, page) = get_as(&gw, &confirm_link, Some(OPERATOR)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("nothing is sent to broker fb") && page.contains("1 live instance(s)"),
        "{page}"
    );

    // A viewer posting is refused; a reason is required; the operator confirms.
    let form = [
        ("id", ids.large.as_str()),
        ("reason", "retired by the cloud team"),
    ];
    assert_eq!(post_form(&gw, "/ui/catalog/confirm", VIEWER, &form).await.0, 403);
    assert_eq!(
        post_form(&gw, "/ui/catalog/confirm", OPERATOR, &[("id", &ids.large)])
            .await
            .0,
        400
    );
    let (status, location, _) = post_form(&gw, "/ui/catalog/confirm", OPERATOR, &form).await;
    assert_eq!(
        (status, location.starts_with("/ui/catalog?done=")),
        (303, true),
        "{location}"
    );
    let (_, _, page) = get_as(&gw, &location, Some(OPERATOR)).await;
    assert!(
        page.contains("Removal confirmed: fb.db/large") && page.contains("No plan is held."),
        "{page}"
    );

    // Adopt: a refused one shows the form again with why; a good one leads to its page.
    let adopt = |instance: &'static str, plan: String| {
        vec![
            ("instance_id", instance.to_owned()),
            ("platform", "k8s-prod".to_owned()),
            ("broker", "fb".to_owned()),
            ("plan", plan),
            ("service", String::new()),
            ("reason", "created before the gateway".to_owned()),
        ]
    };
    let bad = adopt("adopt-1", "no-such-plan".to_owned());
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, page) = post_form(&gw, "/ui/adopt", OPERATOR, &bad).await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Not adopted") && page.contains("no-such-plan"),
        "{page}"
    );
    let good = adopt("adopt-1", ids.small.clone());
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = post_form(&gw, "/ui/adopt", OPERATOR, &good).await;
    assert_eq!(
        (status, location.as_str().split('?').next()),
        (303, Some("/ui/instances/adopt-1"))
    );
    let (_, _, page) = get_as(&gw, &location, Some(VIEWER)).await;
    assert!(
        page.contains("Instance adopt-1 adopted for platform k8s-prod") && page.contains("admin.adopt"),
        "{page}"
    );

    // Abandon a binding: gone from the registry, nothing sent upstream, the audit page says so.
    let bind = json!({"service_id": ids.service, "plan_id": ids.small});
    assert_eq!(
        gw.osb().bind("adopt-1", "b-1", Query::none(), &bind).await.status,
        201
    );
    let (status, _, page) = get_as(&gw, "/ui/bindings/b-1/abandon", Some(OPERATOR)).await;
    assert_eq!(status, 200);
    assert!(page.contains("the credentials stay valid there"), "{page}");
    assert!(
        !page.contains("binding-secret-1"),
        "binding credentials are never shown"
    );
    let (status, location, _) = post_form(
        &gw,
        "/ui/bindings/b-1/abandon",
        OPERATOR,
        &[("reason", "app deleted")],
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, page) = get_as(&gw, &location, Some(VIEWER)).await;
    assert!(
        page.contains("Binding b-1 abandoned: no upstream delete attempted") && page.contains("app deleted"),
        "{page}"
    );
    assert!(
        broker
            .received("DELETE", "/v2/service_instances/adopt-1/service_bindings")
            .is_empty()
    );
    let (status, _, _) = get_as(&gw, "/admin/bindings/b-1", Some(VIEWER)).await;
    assert_eq!(status, 404);
}
