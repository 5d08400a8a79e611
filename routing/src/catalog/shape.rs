//! The size of a catalog, measured before it is parsed: bytes, nesting depth, services and plans,
//! against the broker's [`CatalogLimits`].
//!
//! Parsing a catalog builds a tree of JSON values several times its size, so a catalog is
//! measured first, in two passes that keep nothing: a byte scan for the nesting depth, then
//! serde over the bytes counting `services[*]` and `services[*].plans[*]` while ignoring every
//! other value. A catalog over a limit is refused whole, naming the limit and the broker's key
//! that raises it; nothing of it is kept.

use std::cell::Cell;
use std::fmt;

use osb_config::CatalogLimits;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What a catalog holds, as far as its limits care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub bytes: usize,
    pub depth: usize,
    pub services: usize,
    pub plans: usize,
}

/// Measures `body` against `limits`.
///
/// # Errors
/// The first limit exceeded, as a sentence naming the configuration key that raises it; or
/// what makes the body no JSON document, when that is found first.
pub fn measure(body: &[u8], limits: &CatalogLimits) -> Result<Shape, String> {
    if body.len() > limits.max_bytes {
        return Err(format!(
            "the catalog is {} bytes, more than max_catalog_bytes ({})",
            body.len(),
            limits.max_bytes
        ));
    }
    let depth = depth(body, limits.max_depth).ok_or_else(|| {
        format!(
            "the catalog nests objects and arrays more than max_catalog_depth ({}) deep",
            limits.max_depth
        )
    })?;
    let counts = Counts {
        limits,
        services: Cell::new(0),
        plans: Cell::new(0),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // serde_json's own recursion limit (128) stays: the depth scan ran first.
    match (Document(&counts)).deserialize(&mut deserializer) {
        Ok(()) => {}
        Err(e) => {
            let message = e.to_string();
            // The counting visitors' refusals read as they are; anything else is JSON trouble,
            // left for the validation to describe.
            if message.starts_with("the catalog has more than") {
                return Err(message.split(" at line ").next().unwrap_or(&message).to_owned());
            }
        }
    }
    Ok(Shape {
        bytes: body.len(),
        depth,
        services: counts.services.get(),
        plans: counts.plans.get(),
    })
}

/// The deepest nesting of objects and arrays in `body`; `None` as soon as it passes `max`.
fn depth(body: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return None;
                }
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

/// The running counts and their limits.
struct Counts<'a> {
    limits: &'a CatalogLimits,
    services: Cell<usize>,
    plans: Cell<usize>,
}

/// The catalog document: an object whose `services` are counted.
struct Document<'c, 'a>(&'c Counts<'a>);

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Object {
            counts: self.0,
            key: "services",
            list: List::Services,
        })
    }
}

/// Which list an object's counted key holds.
#[derive(Clone, Copy)]
enum List {
    Services,
    Plans,
}

/// Any value; when it is an object, its `key` is the counted `list`.
struct Object<'c, 'a> {
    counts: &'c Counts<'a>,
    key: &'static str,
    list: List,
}

impl<'de> Visitor<'de> for Object<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.key {
                map.next_value_seed(Items {
                    counts: self.counts,
                    list: self.list,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A counted list: each element is counted (a service's `plans` are counted in turn).
struct Items<'c, 'a> {
    counts: &'c Counts<'a>,
    list: List,
}

impl<'de> DeserializeSeed<'de> for Items<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let limits = self.counts.limits;
        loop {
            let more = match self.list {
                List::Services => seq
                    .next_element_seed(Element(Object {
                        counts: self.counts,
                        key: "plans",
                        list: List::Plans,
                    }))?
                    .is_some(),
                List::Plans => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            let (counter, limit, what, key) = match self.list {
                List::Services => (
                    &self.counts.services,
                    limits.max_services,
                    "services",
                    "max_catalog_services",
                ),
                List::Plans => (&self.counts.plans, limits.max_plans, "plans", "max_catalog_plans"),
            };
            counter.set(counter.get() + 1);
            if counter.get() > limit {
                return Err(de::Error::custom(format!(
                    "the catalog has more than {limit} {what} ({key})"
                )));
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One service: any value, its `plans` counted when it is an object.
struct Element<'c, 'a>(Object<'c, 'a>);

impl<'de> DeserializeSeed<'de> for Element<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CatalogLimits {
        CatalogLimits {
            max_bytes: 10_000,
            max_services: 3,
            max_plans: 4,
            max_depth: 7,
        }
    }

    fn catalog(services: usize, plans: usize) -> Vec<u8> {
        let services: Vec<serde_json::Value> = (0..services)
            .map(|i| {
                serde_json::json!({"id": i, "name": "s", "description": "{[\"", "plans":
                    (0..plans).map(|j| serde_json::json!({"id": j, "x": [[1]]})).collect::<Vec<_>>()})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"x": {"plans": [1, 2, 3, 4, 5]}, "services": services}))
            .unwrap()
    }

    #[test]
    fn a_catalog_within_its_limits_is_measured() {
        let shape = measure(&catalog(3, 1), &limits()).unwrap();
        assert_eq!((shape.services, shape.plans, shape.depth), (3, 3, 7));
        // Not a catalog at all: for the validation to say.
        assert!(measure(b"[1,2", &limits()).is_ok());
        assert!(measure(br#"{"services": 7}"#, &limits()).is_ok());
        assert!(measure(br#"{"services": [7, "x", null, {"plans": {}}]}"#, &limits()).is_err());
        assert!(measure(br#"{"services": [7, "x", {"plans": {}}]}"#, &limits()).is_ok());
    }

    #[test]
    fn each_limit_names_its_key() {
        for (body, key) in [
            (catalog(4, 0), "more than 3 services (max_catalog_services)"),
            (catalog(2, 3), "more than 4 plans (max_catalog_plans)"),
            (vec![b' '; 10_001], "more than max_catalog_bytes (10000)"),
            (
                br#"{"services": [[[[[[[1]]]]]]]}"#.to_vec(),
                "max_catalog_depth (7)",
            ),
        ] {
            let error = measure(&body, &limits()).unwrap_err();
            assert!(error.contains(key), "{error}");
        }
        // Brackets inside strings are not nesting.
        assert!(measure(br#"{"services": [], "x": "[[[[[[[[[[\"[[["}"#, &limits()).is_ok());
    }
}
