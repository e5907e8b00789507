//! Entries of the twin tag index: one per scalar leaf of a twin's tags (`site = "berlin"`,
//! `location.floor = 3`), so a query with a tag equality reads the devices that have it instead
//! of the whole registry. The same function names an entry when it is written and when a query
//! looks it up, so the two cannot disagree (numbers by value: `3` and `3.0` are one entry).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Longest entry indexed. A leaf whose entry would be longer is not indexed, and a query on such
/// a value reads the registry instead.
pub const MAX_ENTRY_BYTES: usize = 1024;

/// The entry of `value` at `path` below `tags`, if such a leaf is indexed (strings, numbers and
/// booleans reached through object keys only).
pub fn entry(path: &[&str], value: &Value) -> Option<String> {
    let value = match value {
        Value::String(_) | Value::Bool(_) => value.to_string(),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                format!("{}", f as i64)
            } else {
                format!("{f}")
            }
        }
        _ => return None,
    };
    let entry = format!("{}={value}", path.join("."));
    (entry.len() <= MAX_ENTRY_BYTES).then_some(entry)
}

/// Characters of a device id its id-index entry holds, and the shortest `STARTSWITH(deviceId,
/// …)` prefix the index serves (a shorter one reads the registry).
pub const ID_PREFIX_CHARS: usize = 2;

/// The id-index entry of a device id, or of a search prefix of at least `ID_PREFIX_CHARS`
/// characters: `$id=` and their first characters. Tag names cannot start with `$`, so no tag
/// entry can be one.
pub fn id_entry(id_or_prefix: &str) -> String {
    let end = id_or_prefix
        .char_indices()
        .nth(ID_PREFIX_CHARS)
        .map_or(id_or_prefix.len(), |(at, _)| at);
    format!("$id={}", &id_or_prefix[..end])
}

/// Every entry of a twin's tags.
pub fn entries(tags: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut path = Vec::new();
    collect(tags, &mut path, &mut out);
    out
}

fn collect<'a>(map: &'a Map<String, Value>, path: &mut Vec<&'a str>, out: &mut BTreeSet<String>) {
    for (key, value) in map {
        path.push(key);
        match value {
            Value::Object(inner) => collect(inner, path, out),
            other => {
                if let Some(entry) = entry(path, other) {
                    out.insert(entry);
                }
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_id_entry_holds_the_first_characters() {
        assert_eq!(id_entry("sensor-0001"), "$id=se");
        assert_eq!(id_entry("se"), "$id=se");
        assert_eq!(id_entry("x"), "$id=x");
    }

    #[test]
    fn every_scalar_leaf_is_an_entry() {
        let tags = json!({
            "site": "berlin",
            "location": { "floor": 3, "wing": { "name": "east" } },
            "active": true,
            "ratio": 0.5,
            "list": [1, 2],
            "long": "x".repeat(2000),
        });
        let entries: Vec<String> = entries(tags.as_object().unwrap()).into_iter().collect();
        assert_eq!(
            entries,
            vec![
                "active=true",
                "location.floor=3",
                "location.wing.name=\"east\"",
                "ratio=0.5",
                "site=\"berlin\"",
            ]
        );
        assert_eq!(
            entry(&["location", "floor"], &json!(3.0)).as_deref(),
            Some("location.floor=3")
        );
        assert_eq!(entry(&["site"], &json!(null)), None);
    }
}
