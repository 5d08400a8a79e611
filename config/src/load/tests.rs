//! Loader and validation cases: each mistake an operator makes, and what they are told.

use std::collections::HashMap;

use config::FileFormat;

use super::*;
use crate::{IdMode, StoreSettings, UpstreamAuth};

const GOOD: &str = r#"
listen: "127.0.0.1:8080"
admin:
  listen: "127.0.0.1:9090"
  username: admin
  password: adminpw
platforms:
  - name: k8s-prod
    username: k8s
    password: secret
brokers:
  - name: azure
    url: http://127.0.0.1:5001
    username: osba
    password_env: AZURE_PW
    rename:
      azure-mysql-5-7: mysql
  - name: aws
    url: https://aws-broker.example:8443/base
    bearer_token: tok
    ids: keep
    refresh_interval_secs: 60
catalog:
  name_separator: "-"
"#;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(text: &str, env: &HashMap<String, String>) -> Result<Loaded, ConfigError> {
    load_str(text, FileFormat::Yaml, "gw.yaml", Path::new("/etc/osb"), env)
}

fn problems(text: &str, env: &HashMap<String, String>) -> Vec<String> {
    match load(text, env) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn good_file_loads_with_defaults() {
    let loaded = load(GOOD, &env(&[("AZURE_PW", "pw")])).unwrap();
    let s = loaded.settings;
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.brokers.len(), 2);
    let azure = &s.brokers[0];
    assert_eq!(azure.namespace, "azure");
    assert_eq!(azure.ids, IdMode::Rewrite);
    assert_eq!(azure.api_version, "2.17");
    assert_eq!(azure.timeout.as_secs(), 30);
    assert!(matches!(&azure.auth, UpstreamAuth::Basic(c) if c.password.expose() == "pw"));
    assert_eq!(azure.published_name("azure-mysql-5-7", "-"), "azure-mysql");
    assert_eq!(s.brokers[1].ids, IdMode::Keep);
    assert!(matches!(&s.brokers[1].auth, UpstreamAuth::Bearer(t) if t.expose() == "tok"));
    assert_eq!(s.brokers[1].refresh_interval.as_secs(), 60);
    assert_eq!(
        s.store,
        StoreSettings::Embedded {
            path: "/etc/osb/data/osb-gateway.store".into()
        }
    );
    assert_eq!(s.catalog.name_separator, "-");
}

#[test]
fn environment_overrides_any_key_including_list_entries() {
    let e = env(&[
        ("AZURE_PW", "pw"),
        ("OSB_GATEWAY__LISTEN", "0.0.0.0:8081"),
        ("OSB_GATEWAY__BROKERS__1__TIMEOUT_SECS", "12"),
        ("OSB_GATEWAY__CATALOG__NAME_SEPARATOR", "."),
        ("UNRELATED", "x"),
    ]);
    let s = load(GOOD, &e).unwrap().settings;
    assert_eq!(s.listen.to_string(), "0.0.0.0:8081");
    assert_eq!(s.brokers[1].timeout.as_secs(), 12);
    assert_eq!(s.catalog.name_separator, ".");
}

#[test]
fn problem_from_the_environment_names_the_variable() {
    let e = env(&[
        ("AZURE_PW", "pw"),
        ("OSB_GATEWAY__BROKERS__0__URL", "broker-a:8080"),
    ]);
    let p = problems(GOOD, &e);
    assert_eq!(
        p,
        vec![
            r#"$OSB_GATEWAY__BROKERS__0__URL: brokers[0].url: expected an absolute http(s) URL, got "broker-a:8080""#
        ]
    );
}

/// Found by the `config` fuzz target: a huge list index made the `config` crate try to allocate
/// the whole list and abort the process. Now it is a problem naming the variable.
#[test]
fn huge_list_indexes_in_the_environment_are_problems_not_aborts() {
    for (var, index) in [
        ("OSB_GATEWAY__BROKERS__4000000000__URL", "4000000000"),
        ("OSB_GATEWAY__PLATFORMS__99999999999999999999__NAME", "beyond u64"),
        ("OSB_GATEWAY__BROKERS__0__RENAME__1024", "1024"),
    ] {
        let p = problems(GOOD, &env(&[("AZURE_PW", "pw"), (var, "x")]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with(&format!("${var}: ")), "{p:?}");
        assert!(
            p[0].ends_with(&format!("list index {index} is too large (at most 1023)")),
            "{p:?}"
        );
    }
    // The largest allowed index still loads (as an incomplete entry, reported as such).
    let e = env(&[
        ("AZURE_PW", "pw"),
        ("OSB_GATEWAY__BROKERS__1023__URL", "http://b"),
    ]);
    assert!(load(GOOD, &e).is_err());
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    let text = GOOD
        .replace("    ids: keep\n", "    ids: keep\n    tiemout_secs: 3\n")
        .replace("catalog:\n", "catalog:\n  refresh: 1\n")
        + "colour: blue\n";
    let p = problems(&text, &env(&[("AZURE_PW", "pw")]));
    assert_eq!(
        p,
        vec![
            "gw.yaml: brokers[1].tiemout_secs: unknown key",
            "gw.yaml: catalog.refresh: unknown key",
            "gw.yaml: colour: unknown key",
        ]
    );
}

#[test]
fn type_errors_name_the_key() {
    let text = GOOD.replace("refresh_interval_secs: 60", "refresh_interval_secs: soon");
    let p = problems(&text, &env(&[("AZURE_PW", "pw")]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("gw.yaml: brokers[1].refresh_interval_secs: invalid type"),
        "{p:?}"
    );
}

#[test]
fn collects_every_semantic_problem_in_one_go() {
    let text = r#"
listen: "localhost"
platforms:
  - name: k8s
    username: k8s
    password_file: /nonexistent/secret
brokers:
  - name: azure
    url: "ftp://x"
    ids: keep
  - name: azure
    url: http://b
    api_version: "3.0"
  - name: aws
    url: http://same
    ids: keep
  - name: aws2
    url: http://same/
    ids: keep
    namespace: aws
    timeout_secs: 0
catalog:
  name_separator: "_"
"#;
    let p = problems(text, &env(&[]));
    let expected = [
        r#"gw.yaml: listen: expected a listen address like 127.0.0.1:8080, got "localhost""#,
        "gw.yaml: platforms[0].password_file: cannot read secret file /nonexistent/secret",
        r#"gw.yaml: catalog.name_separator: expected "." or "-", got "_""#,
        r#"gw.yaml: brokers[0].url: expected an absolute http(s) URL, got "ftp://x""#,
        r#"gw.yaml: brokers[1].name: duplicate broker name "azure""#,
        r#"gw.yaml: brokers[1].namespace: namespace "azure" is already used by brokers[0]"#,
        r#"gw.yaml: brokers[1].api_version: expected an OSB 2.x version like 2.17, got "3.0""#,
        r#"gw.yaml: brokers[3].namespace: namespace "aws" is already used by brokers[2]"#,
        "gw.yaml: brokers[3].ids: kept ids collide: brokers[2] keeps the ids of the same URL",
        "gw.yaml: brokers[3].timeout_secs: must be at least 1",
    ];
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    for (got, want) in p.iter().zip(expected) {
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    }
}

#[test]
fn secrets_are_exactly_one_of_three_and_never_printed() {
    let text = GOOD.replace(
        "    password: secret\n",
        "    password: secret\n    password_env: ALSO\n",
    );
    let p = problems(&text, &env(&[("AZURE_PW", "pw"), ("ALSO", "x")]));
    assert_eq!(
        p,
        vec!["gw.yaml: platforms[0].password: give only one of password, password_env, password_file"]
    );

    let p = problems(GOOD, &env(&[]));
    assert_eq!(
        p,
        vec!["gw.yaml: brokers[0].password_env: environment variable AZURE_PW is not set"]
    );

    let loaded = load(GOOD, &env(&[("AZURE_PW", "pw-value")])).unwrap();
    let debug = format!("{:?}", loaded.settings);
    assert!(!debug.contains("pw-value") && !debug.contains("secret") && !debug.contains("adminpw"));
}

#[test]
fn secret_files_are_read_relative_to_the_config_file_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
    let text = GOOD.replace("password_env: AZURE_PW", "password_file: pw");
    let loaded = load_str(&text, FileFormat::Yaml, "gw.yaml", dir.path(), &env(&[])).unwrap();
    assert!(
        matches!(&loaded.settings.brokers[0].auth, UpstreamAuth::Basic(c) if c.password.expose() == "from-file")
    );
}

#[test]
fn toml_works_too() {
    let text = r#"
listen = "127.0.0.1:0"
[[platforms]]
name = "cf"
bearer_token = "t"
[[brokers]]
name = "gcp"
url = "http://127.0.0.1:1"
"#;
    let s = load_str(text, FileFormat::Toml, "gw.toml", Path::new("."), &env(&[]))
        .unwrap()
        .settings;
    assert_eq!(s.brokers[0].name, "gcp");
    assert!(s.platforms[0].bearer_token.is_some());
}

#[test]
fn renamed_names_over_63_characters_are_reported() {
    let long = "x".repeat(60);
    let text = GOOD.replace("azure-mysql-5-7: mysql", &format!("azure-mysql-5-7: {long}"));
    let p = problems(&text, &env(&[("AZURE_PW", "pw")]));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("gw.yaml: brokers[0].rename.azure-mysql-5-7: \"azure-xxx"),
        "{p:?}"
    );
    assert!(
        p[0].ends_with("is 66 characters; Kubernetes Service Catalog allows 63"),
        "{p:?}"
    );
}

#[test]
fn unreadable_file_and_bad_syntax_are_problems_not_panics() {
    let err = load_file(Path::new("/nonexistent/gw.yaml"), &env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/gw.yaml: cannot read the configuration file")
    );
    let p = problems("listen: [unclosed", &env(&[]));
    assert!(p[0].starts_with("gw.yaml: cannot parse"), "{p:?}");
}

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.yaml");
    let e = env(&[
        ("OSB_GATEWAY_ADMIN_PASSWORD", "a"),
        ("K8S_PROD_PASSWORD", "b"),
        ("K8S_DEV_PASSWORD", "b2"),
        ("CF_TOKEN", "c"),
        ("AZURE_BROKER_PASSWORD", "d"),
        ("AWS_BROKER_PASSWORD", "e"),
        ("GCP_BROKER_TOKEN", "f"),
    ]);
    let loaded = load_file(&path, &e).unwrap();
    assert_eq!(loaded.settings.brokers.len(), 3);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn the_shipped_example_with_secret_files_needs_no_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-files.yaml");
    let loaded = load_file(&path, &env(&[])).unwrap();
    assert_eq!(loaded.settings.brokers.len(), 3);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(
        loaded
            .settings
            .platforms
            .iter()
            .all(|p| p.password_file.is_some() || p.bearer_token_file.is_some())
    );
    assert!(loaded.settings.brokers.iter().all(|b| b.auth_file.is_some()));
}

#[test]
fn postgres_store_takes_a_postgres_url_and_never_prints_it() {
    let with_store = |store: &str| format!("{GOOD}store:\n{store}");
    let e = env(&[("AZURE_PW", "pw")]);
    let url = "postgres://osb:db-pw@db.example:5432/osb";
    let loaded = load(&with_store(&format!("  kind: postgres\n  url: {url}\n")), &e).unwrap();
    assert!(
        !format!("{:?}", loaded.settings).contains("db-pw"),
        "the settings never print the URL"
    );
    assert_eq!(
        loaded.settings.store,
        StoreSettings::Postgres {
            url: crate::Secret::new(url)
        }
    );
    // The URL (with its password) usually comes from the environment.
    let from_env = env(&[
        ("AZURE_PW", "pw"),
        ("OSB_GATEWAY__STORE__URL", "postgresql://osb:env-pw@db/osb"),
    ]);
    let loaded = load(&with_store("  kind: postgres\n"), &from_env).unwrap();
    assert_eq!(
        loaded.settings.store,
        StoreSettings::Postgres {
            url: crate::Secret::new("postgresql://osb:env-pw@db/osb")
        }
    );

    let p = problems(
        &with_store("  kind: postgres\n  url: mysql://osb:db-pw@db/osb\n"),
        &e,
    );
    assert_eq!(
        p,
        vec!["gw.yaml: store.url: expected a postgres:// or postgresql:// URL, got mysql://"]
    );
    let p = problems(&with_store("  kind: postgres\n  url: osb:db-pw@db/osb\n"), &e);
    assert_eq!(
        p,
        vec!["gw.yaml: store.url: expected a postgres:// or postgresql:// URL, got no scheme"]
    );
    let p = problems(&with_store("  kind: postgres\n"), &e);
    assert_eq!(p, vec!["gw.yaml: store.url: required with kind: postgres"]);
    let p = problems(&with_store(&format!("  url: {url}\n")), &e);
    assert_eq!(p, vec!["gw.yaml: store.url: only used with kind: postgres"]);
}

#[test]
fn audit_export_path_is_relative_to_the_config_file() {
    let loaded = load(GOOD, &env(&[("AZURE_PW", "pw")])).unwrap();
    assert_eq!(loaded.settings.audit.jsonl_path, None);
    let text = format!("{GOOD}audit:\n  jsonl_path: audit/osb.jsonl\n");
    let loaded = load(&text, &env(&[("AZURE_PW", "pw")])).unwrap();
    assert_eq!(
        loaded.settings.audit.jsonl_path.as_deref(),
        Some(Path::new("/etc/osb/audit/osb.jsonl"))
    );
    let text = format!("{GOOD}audit:\n  jsonl_path: \"\"\n  keep_days: 3\n");
    assert_eq!(
        problems(&text, &env(&[("AZURE_PW", "pw")])),
        [
            "gw.yaml: audit.keep_days: unknown key",
            "gw.yaml: audit.jsonl_path: must not be empty"
        ]
    );
}

#[test]
fn the_exporters_tls_files_are_checked_and_the_otel_variables_win() {
    let text = format!("{GOOD}telemetry:\n  tls_client_cert_file: /nonexistent/cert.pem\n");
    let p = problems(&text, &env(&[("AZURE_PW", "pw")]));
    assert!(
        p.iter()
            .any(|p| p.starts_with("gw.yaml: telemetry.tls_client_cert_file: ")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p == "gw.yaml: telemetry.tls_client_key_file: tls_client_cert_file is given without its private key"),
        "{p:?}"
    );
    let p = problems(
        GOOD,
        &env(&[
            ("AZURE_PW", "pw"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
        ]),
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{p:?}");
}

#[test]
fn every_type_error_of_a_file_is_reported_in_one_run() {
    let text = GOOD.replace("refresh_interval_secs: 60", "refresh_interval_secs: soon")
        + "max_body_bytes: lots\ntelemetry:\n  metrics: sometimes\n";
    let p = problems(&text, &env(&[("AZURE_PW", "pw")]));
    for key in [
        "brokers[1].refresh_interval_secs",
        "max_body_bytes",
        "telemetry.metrics",
    ] {
        assert!(
            p.iter()
                .any(|p| p.starts_with(&format!("gw.yaml: {key}: invalid type"))),
            "{key} in {p:?}"
        );
    }
}

#[test]
fn an_environment_index_beyond_the_files_list_says_so() {
    let p = problems(
        GOOD,
        &env(&[("AZURE_PW", "pw"), ("OSB_GATEWAY__BROKERS__5__URL", "http://x")]),
    );
    assert_eq!(
        p,
        vec![
            "$OSB_GATEWAY__BROKERS__5__URL: brokers[5]: the file's brokers has 2 entries (indexes 0 to 1): \
             environment variables change entries, they do not add them"
        ]
    );
}

#[test]
fn the_store_of_an_earlier_default_path_is_kept_when_only_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let load_here = || {
        load_str(
            GOOD,
            FileFormat::Yaml,
            "gw.yaml",
            dir.path(),
            &env(&[("AZURE_PW", "pw")]),
        )
        .unwrap()
    };
    let embedded = |path: &str| StoreSettings::Embedded {
        path: dir.path().join(path),
    };
    assert_eq!(load_here().settings.store, embedded("data/osb-gateway.store"));
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/osb-gateway.redb"), b"a redb file").unwrap();
    let loaded = load_here();
    assert_eq!(loaded.settings.store, embedded("data/osb-gateway.redb"));
    assert!(format!("{:?}", loaded.warnings).contains("the default of earlier versions"));
    // While the earlier file is being moved (interrupted between its renames), too.
    std::fs::rename(
        dir.path().join("data/osb-gateway.redb"),
        dir.path().join("data/osb-gateway.redb.redb-backup"),
    )
    .unwrap();
    assert_eq!(load_here().settings.store, embedded("data/osb-gateway.redb"));
    std::fs::create_dir_all(dir.path().join("data/osb-gateway.store")).unwrap();
    assert_eq!(load_here().settings.store, embedded("data/osb-gateway.store"));
}
