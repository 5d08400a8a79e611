//! How the benchmark policy grows past 200 rules: in generations of 200.
//!
//! Generation 1 is the 200-rule policy. Generation `g` ≥ 2 is the same 200 rules about another
//! set of brokers of the same three clouds (`azure-g<g>`, `aws-g<g>`, `gcp-g<g>`: the subscriptions,
//! accounts and projects of another business unit) and its own logical offerings (`mysql-g<g>`,
//! …); its team quota freezes cover the next 25 teams. [`retarget`] makes such a copy of a rule:
//!
//! - its name gets the suffix `-g<g>`, so every name stays unique;
//! - its `platforms` stay exactly as they are: a copy names the same concrete platforms (or the
//!   same globs) as its original, so the rule index files it under the same platforms and every
//!   platform's candidate lists grow with the policy, as in a file grown by more rules of the
//!   same kinds rather than by more platforms;
//! - `services` and `brokers` name the generation's brokers and offerings; a rule about neither
//!   (a tag, a forbidden parameter, a `when` on the context) is restricted to the generation's
//!   brokers.
//!
//! So the benchmark's calls, all to the brokers of generation 1, meet the copies the way they
//! meet the originals that do not apply to them: the copies are walked and do not match.

use serde_json::Value;

use super::rules::OFFERINGS;

/// The brokers of generation 1 (the fixture catalogs).
const BROKERS: [&str; 3] = ["azure", "aws", "gcp"];

/// What generation `generation` appends to names: nothing for the first, `-g<g>` after.
pub(super) fn suffix(generation: usize) -> String {
    if generation == 1 {
        String::new()
    } else {
        format!("-g{generation}")
    }
}

/// Generation `generation`'s counterpart of broker `name`.
pub(super) fn broker(name: &str, generation: usize) -> String {
    format!("{name}{}", suffix(generation))
}

/// Generation `generation`'s counterpart of a `services` glob: `<broker>.<service>` or the name
/// of a logical offering.
fn service(glob: &str, generation: usize) -> String {
    match glob.split_once('.') {
        Some((name, upstream)) => {
            assert!(
                BROKERS.contains(&name),
                "a service glob of an unknown broker: {glob}"
            );
            format!("{}.{upstream}", broker(name, generation))
        }
        None => {
            assert!(OFFERINGS.contains(&glob), "a service glob of no offering: {glob}");
            format!("{glob}{}", suffix(generation))
        }
    }
}

fn strings(names: impl IntoIterator<Item = String>) -> Value {
    Value::Array(names.into_iter().map(Value::String).collect())
}

/// Generation `generation`'s copy of a generation-1 `rule` (the rule itself for generation 1).
pub(super) fn retarget(mut rule: Value, generation: usize) -> Value {
    if generation == 1 {
        return rule;
    }
    let fields = rule.as_object_mut().expect("a rule is an object");
    let name = fields["name"].as_str().expect("every rule is named");
    let name = format!("{name}{}", suffix(generation));
    fields.insert("name".to_owned(), Value::String(name));
    if let Some(services) = fields.get_mut("services") {
        let globs = services.as_array().expect("services is a list");
        *services = strings(
            globs
                .iter()
                .map(|g| service(g.as_str().expect("a service glob"), generation)),
        );
    }
    let offerings = || strings(OFFERINGS.iter().map(|o| service(o, generation)));
    let brokers = fields.remove("brokers");
    let names: Option<Vec<&str>> = brokers
        .as_ref()
        .map(|b| b.as_array().expect("brokers is a list"))
        .map(|b| b.iter().map(|n| n.as_str().expect("a broker")).collect());
    match names.as_deref() {
        // Logical offerings are published by the gateway itself: the generation's offerings.
        Some(["gateway"]) => {
            assert!(!fields.contains_key("services"), "brokers and services");
            fields.insert("services".to_owned(), offerings());
        }
        Some(names) => {
            let names = names.iter().map(|n| {
                assert!(BROKERS.contains(n), "an unknown broker: {n}");
                broker(n, generation)
            });
            fields.insert("brokers".to_owned(), strings(names));
        }
        None if !fields.contains_key("services") => {
            let names = BROKERS.iter().map(|n| broker(n, generation));
            fields.insert("brokers".to_owned(), strings(names));
        }
        None => {}
    }
    rule
}
