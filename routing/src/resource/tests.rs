//! The id grammar and upstream paths, tried with generated ids (proptest): every id the grammar
//! accepts becomes one path segment, and no id made of dots is accepted.

use proptest::prelude::*;

use super::*;

fn id(value: &str) -> OsbId {
    OsbId::parse("instance_id", value).unwrap()
}

#[test]
fn the_grammar() {
    for good in [
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "a",
        "a.b",
        ".a",
        "a..",
        "~_-.x",
        &"x".repeat(255),
    ] {
        assert!(OsbId::parse("instance_id", good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("", "1 to 255"),
        (&*"x".repeat(256), "1 to 255"),
        (".", "dots alone"),
        ("..", "dots alone"),
        ("...", "dots alone"),
        ("%2e%2e", "may contain only"),
        ("a/b", "may contain only"),
        ("a%2Fb", "may contain only"),
        ("a b", "may contain only"),
        ("ä", "may contain only"),
        ("a\\b", "may contain only"),
        ("a\tb", "may contain only"),
        ("a?b", "may contain only"),
        ("a#b", "may contain only"),
        ("a;b", "may contain only"),
    ] {
        let error = OsbId::parse("binding_id", bad).unwrap_err().to_string();
        assert!(
            error.starts_with("binding_id ") && error.contains(why),
            "{bad:?}: {error}"
        );
    }
    assert!(check_operation("op 1").is_ok());
    assert!(check_operation("").is_err());
    assert!(check_operation(&"é".repeat(10_000)).is_ok());
    assert!(check_operation(&"o".repeat(10_001)).is_err());
}

#[test]
fn paths_are_built_segment_by_segment() {
    let base = Url::parse("http://broker:8080").unwrap();
    let (i, b) = (id("inst-1"), id("bind.1"));
    let url = |p: UpstreamPath| p.url(&base).unwrap().to_string();
    assert_eq!(url(UpstreamPath::catalog()), "http://broker:8080/v2/catalog");
    assert_eq!(
        url(UpstreamPath::instance(&i).with_pairs(&[("accepts_incomplete", "true")])),
        "http://broker:8080/v2/service_instances/inst-1?accepts_incomplete=true"
    );
    assert_eq!(
        url(UpstreamPath::binding(&i, &b)
            .last_operation()
            .with_pairs(&[("operation", "op 1/2+3&x=y")])),
        "http://broker:8080/v2/service_instances/inst-1/service_bindings/bind.1/last_operation?operation=op%201%2F2%2B3%26x%3Dy"
    );
    // A broker behind a path prefix keeps it, with or without a trailing slash.
    for prefix in ["http://h/osb", "http://h/osb/"] {
        let base = Url::parse(prefix).unwrap();
        assert_eq!(
            UpstreamPath::instance(&i).url(&base).unwrap().as_str(),
            "http://h/osb/v2/service_instances/inst-1"
        );
    }
    assert_eq!(
        UpstreamPath::binding(&i, &b).to_string(),
        "/v2/service_instances/inst-1/service_bindings/bind.1"
    );
    assert_eq!(UpstreamPath::instance(&i).with_query(String::new()).query(), None);
}

#[test]
fn encoding_keeps_only_unreserved_characters() {
    assert_eq!(encode("a-Z_0.~"), "a-Z_0.~");
    assert_eq!(encode("a b/é%"), "a%20b%2F%C3%A9%25");
}

/// Characters that matter to URL parsers, and some that don't.
fn tricky() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = "a.Z0-_~%2eE/\\?#;:@ \t\u{e9}\u{0}+&=".chars().collect();
    prop::collection::vec(prop::sample::select(alphabet), 0..8).prop_map(|c| c.into_iter().collect())
}

proptest! {
    /// For every id the grammar accepts, the URL the upstream receives has exactly the segments
    /// that were routed: the base's, then `v2`, `service_instances`, the instance id, and for a
    /// binding `service_bindings` and the binding id. Nothing is normalised away, re-parsing what
    /// goes on the wire gives the same URL, and decoding each segment gives the id back.
    #[test]
    fn an_accepted_id_reaches_the_upstream_as_exactly_its_segment(
        instance in prop_oneof![tricky(), any::<String>()],
        binding in prop_oneof![tricky(), any::<String>()],
        prefix in prop::sample::select(vec!["", "/", "/osb", "/osb/", "/a/b"]),
        last_operation in any::<bool>(),
    ) {
        let base = Url::parse(&format!("http://broker:8080{prefix}")).unwrap();
        let base_segments: Vec<String> = base
            .path_segments()
            .unwrap()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for (instance, binding) in [(instance.as_str(), None), (instance.as_str(), Some(binding.as_str()))] {
            let Ok(instance_id) = OsbId::parse("instance_id", instance) else { continue };
            let (mut path, mut expected) = (
                UpstreamPath::instance(&instance_id),
                vec!["v2".to_owned(), "service_instances".to_owned(), instance.to_owned()],
            );
            if let Some(binding) = binding {
                let Ok(binding_id) = OsbId::parse("binding_id", binding) else { continue };
                path = UpstreamPath::binding(&instance_id, &binding_id);
                expected.extend(["service_bindings".to_owned(), binding.to_owned()]);
            }
            if last_operation {
                path = path.last_operation();
                expected.push("last_operation".to_owned());
            }
            let url = path.url(&base).unwrap();
            let wire = Url::parse(url.as_str()).unwrap();
            prop_assert_eq!(&wire, &url);
            let mut all = base_segments.clone();
            all.extend(expected);
            let sent: Vec<String> = wire
                .path()
                .strip_prefix('/')
                .unwrap()
                .split('/')
                .map(percent_decode)
                .collect();
            prop_assert_eq!(sent, all);
        }
    }

    /// Ids the grammar refuses include every dot segment and everything a URL library rewrites.
    #[test]
    fn refused_ids_are_exactly_the_unsafe_ones(value in prop_oneof![tricky(), any::<String>()]) {
        let safe = !value.is_empty()
            && value.len() <= MAX_ID_LEN
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            && value.bytes().any(|b| b != b'.');
        prop_assert_eq!(OsbId::parse("instance_id", &value).is_ok(), safe);
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(byte) = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
