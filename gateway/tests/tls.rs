//! TLS toward upstream brokers, against real `openbrokerapi` brokers serving https with a private
//! CA made by the test: trusted through `tls_ca_file`, a client certificate presented through
//! `tls_client_cert_file`/`tls_client_key_file` (mTLS), and `tls_insecure_skip_verify` for labs.
//! Without the CA or the certificate the broker takes no calls and says why. The PostgreSQL store
//! over TLS as libpq's `sslmode` says, against a private PostgreSQL server that takes TLS only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::certs::TestCa;
use crate::support::eventually;
use crate::support::gateway::{PLATFORM_PASSWORD, PLATFORM_USER};
use crate::support::gateway::{TestGateway, platforms_yaml};
use crate::support::obapi::{BrokerTls, ObapiBroker};
use crate::support::osb::{OsbClient, Query, Resource, plan_ids};
use crate::support::postgres::PrivateServer;

fn write_catalog(dir: &Path) -> PathBuf {
    let path = dir.join("catalog.json");
    let catalog = json!({"services": [{
        "id": "svc-db", "name": "db", "description": "a database", "bindable": true,
        "plans": [{"id": "plan-small", "name": "small", "description": "small"}]
    }]});
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    path
}

/// A gateway in front of one broker entry named `tlsb` (`extra` holds its TLS keys).
async fn gateway(broker: &ObapiBroker, extra: &str) -> TestGateway {
    let entry = format!(
        "{}    refresh_interval_secs: 3600\n{extra}",
        broker.config_entry("tlsb")
    );
    TestGateway::start(&format!("{}brokers:\n{entry}", platforms_yaml())).await
}

/// provision → poll → bind → unbind → deprovision → poll, through the gateway.
async fn lifecycle(gw: &TestGateway) {
    lifecycle_through(&gw.osb()).await;
}

/// [`lifecycle`] through `osb` (any client of the gateway).
async fn lifecycle_through(osb: &OsbClient) {
    let catalog = osb.ready_catalog().await.body;
    let (service_id, plan_id) = plan_ids(&catalog, "tlsb.db", "small");
    let instance = format!("tls-{}", uuid::Uuid::new_v4());
    let provision = json!({"service_id": service_id, "plan_id": plan_id,
                           "organization_guid": "org", "space_guid": "space"});
    let created = osb
        .provision(&instance, Query::none().incomplete(), &provision)
        .await;
    assert!(matches!(created.status.as_u16(), 201 | 202), "{}", created.text());
    if created.status == 202 {
        let query = Query::ids(&service_id, &plan_id).operation(&created.operation());
        let polled = osb.poll(Resource::Instance(&instance), query).await;
        assert_eq!(polled.last.body["state"], "succeeded", "{}", polled.last.text());
    }
    let bound = osb
        .bind(
            &instance,
            "b-1",
            Query::none(),
            &json!({"service_id": service_id, "plan_id": plan_id}),
        )
        .await;
    assert_eq!(bound.status, 201, "{}", bound.text());
    let unbound = osb
        .unbind(&instance, "b-1", Query::ids(&service_id, &plan_id))
        .await;
    assert_eq!(unbound.status, 200, "{}", unbound.text());
    let gone = osb
        .deprovision(&instance, Query::ids(&service_id, &plan_id).incomplete())
        .await;
    assert!(matches!(gone.status.as_u16(), 200 | 202), "{}", gone.text());
}

/// Waits until broker `tlsb`'s catalog refresh failed, and returns its last error.
async fn refresh_error(gw: &TestGateway) -> String {
    eventually("the refresh fails", Duration::from_secs(20), || async {
        let status: Value = gw.broker_status("tlsb").await;
        status["last_error"].as_str().map(str::to_owned)
    })
    .await
}

#[tokio::test]
async fn a_broker_behind_a_private_ca_is_trusted_through_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "upstream");
    let server = ca.server("broker");
    let tls = BrokerTls {
        cert: server.cert,
        key: server.key,
        client_ca: None,
    };
    let broker = ObapiBroker::start_tls(&write_catalog(dir.path()), tls).await;
    assert!(broker.url().starts_with("https://"));

    let trusting = gateway(&broker, &format!("    tls_ca_file: {}\n", ca.ca_file().display())).await;
    lifecycle(&trusting).await;

    // Without the CA: no catalog, and the reason names the CA.
    let unaware = gateway(&broker, "").await;
    let error = refresh_error(&unaware).await;
    assert!(
        error.contains("TLS handshake failed") && error.contains("unknown CA"),
        "{error}"
    );
    assert_eq!(unaware.broker_status("tlsb").await["healthy"], false);

    // A lab's way out: any certificate accepted (and said so at start).
    let lab = gateway(&broker, "    tls_insecure_skip_verify: true\n").await;
    lifecycle(&lab).await;
}

#[tokio::test]
async fn a_broker_that_requires_a_client_certificate_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "upstream");
    let clients = TestCa::new(dir.path(), "platform-team");
    let server = ca.server("broker");
    let tls = BrokerTls {
        cert: server.cert,
        key: server.key,
        client_ca: Some(clients.ca_file()),
    };
    let broker = ObapiBroker::start_tls(&write_catalog(dir.path()), tls).await;
    let gateway_cert = clients.client("osb-gateway");
    let ca_line = format!("    tls_ca_file: {}\n", ca.ca_file().display());

    let with_cert = gateway(
        &broker,
        &format!(
            "{ca_line}    tls_client_cert_file: {}\n    tls_client_key_file: {}\n",
            gateway_cert.cert.display(),
            gateway_cert.key.display()
        ),
    )
    .await;
    lifecycle(&with_cert).await;

    // Without a certificate: refused, and the reason says what is missing.
    let without = gateway(&broker, &ca_line).await;
    let error = refresh_error(&without).await;
    assert!(
        error.contains("TLS handshake failed") && error.contains("client certificate"),
        "{error}"
    );

    // A certificate from a CA the broker does not trust: refused too.
    let stranger = TestCa::new(dir.path(), "stranger").client("osb-gateway");
    let untrusted = gateway(
        &broker,
        &format!(
            "{ca_line}    tls_client_cert_file: {}\n    tls_client_key_file: {}\n",
            stranger.cert.display(),
            stranger.key.display()
        ),
    )
    .await;
    let error = refresh_error(&untrusted).await;
    assert!(error.contains("TLS handshake failed"), "{error}");
}

#[test]
fn tls_keys_are_checked_with_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "upstream");
    let client = ca.client("gw");
    let load = |keys: &str| {
        let yaml = format!(
            "{}brokers:\n  - name: b\n    url: https://127.0.0.1:1\n    username: u\n    password: p\n{keys}",
            platforms_yaml()
        );
        osb_config::load_str(
            &yaml,
            osb_config::FileFormat::Yaml,
            "gateway.yaml",
            dir.path(),
            &std::collections::HashMap::new(),
        )
    };
    let problems = |keys: &str| match load(keys) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };

    let ok = load(&format!(
        "    tls_ca_file: {}\n    tls_client_cert_file: {}\n    tls_client_key_file: {}\n",
        ca.ca_file().display(),
        client.cert.display(),
        client.key.display()
    ))
    .unwrap();
    let tls = &ok.settings.brokers[0].tls;
    assert!(tls.ca_pem.is_some() && tls.client_identity_pem.is_some());
    assert!(
        !format!("{:?}", ok.settings).contains("PRIVATE KEY"),
        "the client key never prints"
    );

    let only_cert = problems(&format!("    tls_client_cert_file: {}\n", client.cert.display()));
    assert!(
        only_cert.contains("brokers[0].tls_client_key_file") && only_cert.contains("without its private key"),
        "{only_cert}"
    );
    let missing = problems("    tls_ca_file: nowhere.pem\n");
    assert!(
        missing.contains("brokers[0].tls_ca_file") && missing.contains("cannot read"),
        "{missing}"
    );
    let not_a_cert = problems(&format!("    tls_ca_file: {}\n", client.key.display()));
    assert!(not_a_cert.contains("holds no PEM certificate"), "{not_a_cert}");
    let not_a_key = problems(&format!(
        "    tls_client_cert_file: {}\n    tls_client_key_file: {}\n",
        client.cert.display(),
        client.cert.display()
    ));
    assert!(not_a_key.contains("holds no PEM private key"), "{not_a_key}");
}

/// Opens the PostgreSQL store at `url` as `serve` does; the error text if it fails.
async fn open_store(url: &str) -> Result<std::sync::Arc<dyn osb_routing::Store>, String> {
    let settings = osb_config::StoreSettings::Postgres {
        url: osb_config::Secret::new(url),
    };
    osb_routing::store::open(&settings)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_postgresql_store_speaks_tls_as_libpq_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "db");
    let cert = ca.server("postgres");
    let server = PrivateServer::start_tls(&cert.cert, &cert.key);
    let url = |query: &str| format!("{}?{query}", server.url());
    let ca_file = ca.ca_file().display().to_string();

    // The server takes TLS only: plain TCP is refused; every TLS mode gets in.
    let plain = open_store(&url("sslmode=disable"))
        .await
        .err()
        .unwrap_or_default();
    assert!(
        plain.contains("no encryption") || plain.contains("pg_hba"),
        "{plain}"
    );
    for mode in ["sslmode=prefer", "sslmode=require"] {
        open_store(&url(mode)).await.unwrap();
    }
    open_store(&url(&format!("sslmode=verify-ca&sslrootcert={ca_file}")))
        .await
        .unwrap();
    let store = open_store(&url(&format!("sslmode=verify-full&sslrootcert={ca_file}")))
        .await
        .unwrap();
    store.ping().await.unwrap();

    // Another CA: refused, saying why.
    let other = TestCa::new(dir.path(), "other");
    let wrong = open_store(&url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.ca_file().display()
    )))
    .await
    .err()
    .unwrap_or_default();
    assert!(
        wrong.contains("TLS: the server's certificate is not signed by a CA in sslrootcert"),
        "{wrong}"
    );
    drop(store);

    // The gateway on that store over verify-full: a whole lifecycle is recorded in it.
    let broker = ObapiBroker::start(&write_catalog(dir.path())).await;
    let store_url = url(&format!("sslmode=verify-full&sslrootcert={ca_file}"));
    let gw = TestGateway::start_with_env(
        &format!("{}brokers:\n{}", platforms_yaml(), broker.config_entry("tlsb")),
        &[],
        &[
            ("OSB_GATEWAY__STORE__KIND", "postgres"),
            ("OSB_GATEWAY__STORE__URL", &store_url),
        ],
    )
    .await;
    lifecycle(&gw).await;
}

#[test]
fn check_config_and_the_store_agree_on_every_sslmode() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "db");
    let problems = |query: &str| {
        let yaml = format!(
            "store:\n  kind: postgres\n  url: \"postgres://u:secret-pw@127.0.0.1:1/db?{query}\"\n{}brokers:\n  - name: b\n    url: http://127.0.0.1:1\n    username: u\n    password: p\n",
            platforms_yaml()
        );
        match osb_config::load_str(
            &yaml,
            osb_config::FileFormat::Yaml,
            "gateway.yaml",
            dir.path(),
            &std::collections::HashMap::new(),
        ) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let ca_file = ca.ca_file().display().to_string();
    for ok in [
        String::new(),
        "sslmode=disable".to_owned(),
        "sslmode=allow".to_owned(),
        "sslmode=prefer".to_owned(),
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca&sslrootcert={ca_file}"),
        format!("sslmode=verify-full&sslrootcert={ca_file}"),
    ] {
        assert_eq!(problems(&ok), "", "{ok}");
    }
    for (bad, says) in [
        ("sslmode=verify-full", "need sslrootcert"),
        ("sslmode=sometimes", "is not one of disable"),
        (
            "sslmode=require&sslcert=/nowhere.pem",
            "sslcert is given without sslkey",
        ),
        (
            "sslmode=verify-ca&sslrootcert=/nowhere.pem",
            "sslrootcert: cannot read",
        ),
    ] {
        let found = problems(bad);
        assert!(
            found.contains("store.url") && found.contains(says),
            "{bad}: {found}"
        );
        assert!(!found.contains("secret-pw"), "never the password: {found}");
    }
}

/// The DER bytes of the first certificate in a PEM file.
fn der_of(pem_file: &Path) -> Vec<u8> {
    use base64::Engine;
    let pem = std::fs::read_to_string(pem_file).unwrap();
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

/// A client of the gateway's HTTPS listener trusting only `ca_file`, a new connection per call.
fn https_client(ca_file: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_file).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_osb_listener_serves_https_and_rotates_its_certificate_without_failing_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "gateway");
    let first = ca.server("first");
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&first.cert, &cert_file).unwrap();
    std::fs::copy(&first.key, &key_file).unwrap();
    let broker = ObapiBroker::start(&write_catalog(dir.path())).await;
    let gw = TestGateway::start(&format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n{}brokers:\n{}",
        cert_file.display(),
        key_file.display(),
        platforms_yaml(),
        broker.config_entry("tlsb")
    ))
    .await;
    let base = format!("https://127.0.0.1:{}", gw.addr.port());
    let client = https_client(&ca.ca_file());
    let osb = OsbClient::new(base.clone())
        .basic(PLATFORM_USER, PLATFORM_PASSWORD)
        .with_http(client.clone());

    // A whole lifecycle over HTTPS, the client trusting only the test CA.
    lifecycle_through(&osb).await;

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = crate::support::http().get(gw.url("/v2/catalog")).send().await;
    assert!(!matches!(&plain, Ok(r) if r.status() == 200), "{plain:?}");

    // The certificate replaced on disk under load: every call answers, new handshakes get the new one.
    let peer = |response: &reqwest::Response| {
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (client.clone(), format!("{base}/v2/catalog"), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = client
                    .get(&url)
                    .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
                    .header("X-Broker-API-Version", "2.17")
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == 200 => ok += 1,
                    Ok(response) => failed.push(response.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = ca.server("second");
    std::fs::copy(&second.cert, &cert_file).unwrap();
    std::fs::copy(&second.key, &key_file).unwrap();
    let wanted = der_of(&second.cert);
    eventually(
        "new handshakes get the new certificate",
        Duration::from_secs(10),
        || {
            // A new client each time: a client resuming its TLS session is not shown the
            // certificate again.
            let (client, url, wanted) = (
                https_client(&ca.ca_file()),
                format!("{base}/v2/catalog"),
                wanted.clone(),
            );
            async move {
                let response = client
                    .get(&url)
                    .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
                    .header("X-Broker-API-Version", "2.17")
                    .send()
                    .await
                    .ok()?;
                (peer(&response) == Some(wanted)).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut calls, mut failures) = (0, Vec::new());
    for task in load {
        let (ok, failed) = task.await.unwrap();
        calls += ok;
        failures.extend(failed);
    }
    assert!(calls > 20, "the load ran: {calls} calls");
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        calls,
        failures.first()
    );
}

#[tokio::test]
async fn the_osb_listener_can_require_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "gateway");
    let server = ca.server("osb");
    let platforms = TestCa::new(dir.path(), "platforms");
    let broker = ObapiBroker::start(&write_catalog(dir.path())).await;
    let gw = TestGateway::start(&format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n{}brokers:\n{}",
        server.cert.display(),
        server.key.display(),
        platforms.ca_file().display(),
        platforms_yaml(),
        broker.config_entry("tlsb")
    ))
    .await;
    let base = format!("https://127.0.0.1:{}", gw.addr.port());
    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(ca.ca_file()).unwrap()).unwrap();
    let platform = platforms.client("k8s-prod");
    let mut identity = std::fs::read(&platform.cert).unwrap();
    identity.extend(std::fs::read(&platform.key).unwrap());
    let with_cert = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca_cert.clone())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let osb = OsbClient::new(base.clone())
        .basic(PLATFORM_USER, PLATFORM_PASSWORD)
        .with_http(with_cert);
    lifecycle_through(&osb).await;

    let without_cert = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca_cert)
        .build()
        .unwrap();
    let refused = without_cert
        .get(format!("{base}/v2/catalog"))
        .basic_auth(PLATFORM_USER, Some(PLATFORM_PASSWORD))
        .header("X-Broker-API-Version", "2.17")
        .send()
        .await;
    assert!(refused.is_err(), "no client certificate, no answer: {refused:?}");
}
