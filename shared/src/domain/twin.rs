//! Device twins, as Azure IoT Hub shapes them: tags, desired and reported properties, each section
//! with a `$version` and per-node `$metadata.$lastUpdated` (and `$lastUpdatedVersion` for
//! desired). Patches are JSON merge patches (`null` deletes a key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::timestamp::Timestamp;

/// Azure's limits.
pub const MAX_SECTION_BYTES: usize = 32 * 1024;
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_STRING_BYTES: usize = 4 * 1024;
pub const MAX_DEPTH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("{0} must be a JSON object")]
    NotAnObject(String),
    #[error(
        "key {0:?} is invalid: keys are 1 to 1024 bytes without '.', '$', spaces or control characters"
    )]
    InvalidKey(String),
    #[error("the string value of {0} is longer than 4 KB")]
    StringTooLong(String),
    #[error("{0} is nested deeper than 10 levels")]
    TooDeep(String),
    #[error("{section} would be {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        section: &'static str,
        size: usize,
        limit: usize,
    },
}

/// One section of properties with its version and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub properties: Map<String, Value>,
    pub version: u64,
    /// Mirrors `properties`: `$lastUpdated` (and `$lastUpdatedVersion` for desired) on every node.
    pub metadata: Map<String, Value>,
}

impl Section {
    fn empty() -> Self {
        Self {
            properties: Map::new(),
            version: 1,
            metadata: Map::new(),
        }
    }

    /// Azure's wire form: the properties with `$metadata` and `$version` beside them.
    pub fn to_json(&self) -> Value {
        let mut out = self.properties.clone();
        out.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        out.insert("$version".into(), Value::from(self.version));
        Value::Object(out)
    }
}

/// The twin of one device generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    pub generation_id: String,
    /// Increases on every change of tags, desired or reported.
    pub version: u64,
    pub tags: Map<String, Value>,
    pub desired: Section,
    pub reported: Section,
    /// The latest jobs that changed this twin, written with their change, so a job retried after
    /// a crash sees that it already did this device (not part of Azure's twin document).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
}

/// How many job ids a twin remembers: more than the jobs that run at once on one device.
pub const REMEMBERED_JOBS: usize = 16;

/// What a section patch does to metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Tags,
    Desired,
    Reported,
}

impl SectionKind {
    fn name(self) -> &'static str {
        match self {
            SectionKind::Tags => "tags",
            SectionKind::Desired => "properties.desired",
            SectionKind::Reported => "properties.reported",
        }
    }

    fn limit(self) -> usize {
        match self {
            SectionKind::Tags => MAX_TAGS_BYTES,
            SectionKind::Desired | SectionKind::Reported => MAX_SECTION_BYTES,
        }
    }
}

impl Twin {
    pub fn new(generation_id: &str) -> Self {
        Self {
            generation_id: generation_id.to_owned(),
            version: 1,
            tags: Map::new(),
            desired: Section::empty(),
            reported: Section::empty(),
            jobs: Vec::new(),
        }
    }

    /// Remembers that `job_id` changed this twin.
    pub fn remember_job(&mut self, job_id: &str) {
        self.jobs.retain(|j| j != job_id);
        self.jobs.push(job_id.to_owned());
        let excess = self.jobs.len().saturating_sub(REMEMBERED_JOBS);
        self.jobs.drain(..excess);
    }

    /// Azure's twin etag: base64 of the version as 8 big-endian bytes.
    pub fn etag(&self) -> String {
        BASE64.encode(self.version.to_be_bytes())
    }

    /// Merges `patch` into a section (`null` deletes), bumping versions and stamping metadata.
    /// Nothing changes if the result would break a limit.
    pub fn patch(
        &mut self,
        kind: SectionKind,
        patch: &Value,
        at: Timestamp,
    ) -> Result<(), TwinError> {
        let Value::Object(patch) = patch else {
            return Err(TwinError::NotAnObject(kind.name().into()));
        };
        validate(patch, kind.name(), 1)?;
        let mut next = self.clone();
        next.version += 1;
        match kind {
            SectionKind::Tags => {
                merge(&mut next.tags, patch);
            }
            SectionKind::Desired | SectionKind::Reported => {
                let with_version = kind == SectionKind::Desired;
                let section = if with_version {
                    &mut next.desired
                } else {
                    &mut next.reported
                };
                section.version += 1;
                let version = section.version;
                merge(&mut section.properties, patch);
                stamp(
                    &mut section.metadata,
                    patch,
                    at,
                    with_version.then_some(version),
                );
            }
        }
        next.check_sizes()?;
        *self = next;
        Ok(())
    }

    /// Replaces tags and desired properties (PUT /twins/{id}); reported stays.
    pub fn replace(
        &mut self,
        tags: &Value,
        desired: &Value,
        at: Timestamp,
    ) -> Result<(), TwinError> {
        let (Value::Object(tags), Value::Object(desired)) = (tags, desired) else {
            return Err(TwinError::NotAnObject("tags and properties.desired".into()));
        };
        validate(tags, "tags", 1)?;
        validate(desired, "properties.desired", 1)?;
        let mut next = self.clone();
        next.version += 1;
        next.tags = strip_nulls(tags);
        next.desired.version += 1;
        next.desired.properties = strip_nulls(desired);
        next.desired.metadata = Map::new();
        let version = next.desired.version;
        stamp(
            &mut next.desired.metadata,
            &next.desired.properties.clone(),
            at,
            Some(version),
        );
        next.check_sizes()?;
        *self = next;
        Ok(())
    }

    fn check_sizes(&self) -> Result<(), TwinError> {
        for (kind, map) in [
            (SectionKind::Tags, &self.tags),
            (SectionKind::Desired, &self.desired.properties),
            (SectionKind::Reported, &self.reported.properties),
        ] {
            let size = serde_json::to_vec(map)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > kind.limit() {
                return Err(TwinError::TooLarge {
                    section: kind.name(),
                    size,
                    limit: kind.limit(),
                });
            }
        }
        Ok(())
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key
            .chars()
            .any(|c| c == '.' || c == '$' || c == ' ' || c.is_control())
}

fn validate(map: &Map<String, Value>, path: &str, depth: usize) -> Result<(), TwinError> {
    if depth > MAX_DEPTH {
        return Err(TwinError::TooDeep(path.to_owned()));
    }
    for (key, value) in map {
        if !valid_key(key) {
            return Err(TwinError::InvalidKey(key.chars().take(64).collect()));
        }
        let child = format!("{path}.{key}");
        validate_value(value, &child, depth)?;
    }
    Ok(())
}

fn validate_value(value: &Value, path: &str, depth: usize) -> Result<(), TwinError> {
    match value {
        Value::String(s) if s.len() > MAX_STRING_BYTES => {
            Err(TwinError::StringTooLong(path.to_owned()))
        }
        Value::Object(child) => validate(child, path, depth + 1),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| validate_value(item, path, depth + 1)),
        _ => Ok(()),
    }
}

/// JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child) => match target.get_mut(key) {
                Some(Value::Object(existing)) => merge(existing, child),
                _ => {
                    target.insert(key.clone(), Value::Object(strip_nulls(child)));
                }
            },
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

fn strip_nulls(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Object(child) => (k.clone(), Value::Object(strip_nulls(child))),
            other => (k.clone(), other.clone()),
        })
        .collect()
}

/// Updates metadata for the nodes a patch touched, and the section root.
fn stamp(
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    at: Timestamp,
    version: Option<u64>,
) {
    fn node(at: Timestamp, version: Option<u64>) -> Map<String, Value> {
        let mut node = Map::new();
        node.insert("$lastUpdated".into(), Value::String(at.to_string()));
        if let Some(v) = version {
            node.insert("$lastUpdatedVersion".into(), Value::from(v));
        }
        node
    }
    fn walk(
        metadata: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        at: Timestamp,
        version: Option<u64>,
    ) {
        for (key, value) in patch {
            match value {
                Value::Null => {
                    metadata.remove(key);
                }
                Value::Object(child) => {
                    let entry = metadata
                        .entry(key.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    if let Value::Object(meta) = entry {
                        meta.extend(node(at, version));
                        walk(meta, child, at, version);
                    }
                }
                _ => {
                    metadata.insert(key.clone(), Value::Object(node(at, version)));
                }
            }
        }
    }
    metadata.extend(node(at, version));
    walk(metadata, patch, at, version);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).unwrap()
    }

    #[test]
    fn patches_merge_delete_and_bump_versions_and_metadata() {
        let mut twin = Twin::new("g1");
        twin.patch(
            SectionKind::Desired,
            &json!({"interval": 30, "mode": {"eco": true, "level": 2}}),
            t(1000),
        )
        .unwrap();
        twin.patch(
            SectionKind::Desired,
            &json!({"mode": {"level": null, "fan": "auto"}}),
            t(2000),
        )
        .unwrap();
        assert_eq!(
            Value::Object(twin.desired.properties.clone()),
            json!({"interval": 30, "mode": {"eco": true, "fan": "auto"}})
        );
        assert_eq!(
            (twin.version, twin.desired.version, twin.reported.version),
            (3, 3, 1)
        );
        let meta = &twin.desired.metadata;
        assert_eq!(meta["$lastUpdated"], "1970-01-01T00:00:02Z");
        assert_eq!(meta["interval"]["$lastUpdatedVersion"], 2);
        assert_eq!(meta["mode"]["fan"]["$lastUpdated"], "1970-01-01T00:00:02Z");
        assert_eq!(meta["mode"]["eco"]["$lastUpdated"], "1970-01-01T00:00:01Z");
        assert!(meta["mode"].get("level").is_none());
        let wire = twin.desired.to_json();
        assert_eq!(
            (wire["$version"].clone(), wire["interval"].clone()),
            (json!(3), json!(30))
        );

        twin.patch(SectionKind::Reported, &json!({"firmware": "1.2"}), t(3000))
            .unwrap();
        assert!(
            twin.reported.metadata["firmware"]
                .get("$lastUpdatedVersion")
                .is_none(),
            "reported metadata has no version"
        );
        assert_eq!(twin.etag(), BASE64.encode(4u64.to_be_bytes()));
    }

    #[test]
    fn replace_sets_tags_and_desired_and_keeps_reported() {
        let mut twin = Twin::new("g");
        twin.patch(SectionKind::Reported, &json!({"fw": "1"}), t(0))
            .unwrap();
        twin.patch(SectionKind::Desired, &json!({"a": 1}), t(0))
            .unwrap();
        twin.replace(&json!({"site": "hq"}), &json!({"b": 2, "c": null}), t(5))
            .unwrap();
        assert_eq!(
            Value::Object(twin.desired.properties.clone()),
            json!({"b": 2})
        );
        assert_eq!(Value::Object(twin.tags.clone()), json!({"site": "hq"}));
        assert_eq!(
            Value::Object(twin.reported.properties.clone()),
            json!({"fw": "1"})
        );
    }

    #[test]
    fn limits_are_enforced_and_leave_the_twin_unchanged() {
        let mut twin = Twin::new("g");
        let before = twin.clone();
        let deep = (0..11).fold(json!(1), |inner, i| json!({ format!("k{i}"): inner }));
        let cases = [
            json!({"a.b": 1}),
            json!({"$a": 1}),
            json!({"a b": 1}),
            json!({ "k".repeat(1025): 1 }),
            json!({"s": "x".repeat(4097)}),
            deep,
            json!({"big": vec!["x".repeat(4000); 9]}),
        ];
        for patch in cases {
            assert!(
                twin.patch(SectionKind::Desired, &patch, t(0)).is_err(),
                "{}",
                &patch.to_string()[..60.min(patch.to_string().len())]
            );
        }
        assert!(
            twin.patch(
                SectionKind::Tags,
                &json!({"t": "x".repeat(4000), "u": "y".repeat(4000), "v": "z".repeat(300)}),
                t(0)
            )
            .is_err()
        );
        assert!(twin.patch(SectionKind::Desired, &json!([1]), t(0)).is_err());
        assert_eq!(twin, before);
        let depth_ten = (0..9).fold(json!(1), |inner, i| json!({ format!("k{i}"): inner }));
        assert!(twin.patch(SectionKind::Desired, &depth_ten, t(0)).is_ok());
    }
}
