//! Which devices a twin query reads: the registry in storage order, the devices the tag index
//! has for the condition's tag equalities, intersected in device id order before any device is
//! read (`tags.building = 'B2' AND tags.floor = 3` reads the devices on that floor of that
//! building, not every device of the building), or the devices whose id starts with a prefix
//! (`STARTSWITH(deviceId, 'pump-1')`, the dashboard's search), from the same index.

use std::collections::{BTreeSet, VecDeque};

use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::tag_index;
use hub_shared::ports::{IdPage, StoreError, TwinStore};
use hub_shared::query::ast::{BinaryOp, Function};
use hub_shared::query::{Expr, Query, Segment};

/// Index entries read per request while intersecting: they are a few dozen bytes each.
const INDEX_PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The whole registry, in storage order.
    Scan,
    /// The devices the tag index has for every one of these entries, in id order.
    Tagged(Vec<String>),
    /// The devices whose id starts with this prefix, in id order.
    IdPrefix(String),
}

/// The prefix of a conjunct `STARTSWITH(deviceId, '<prefix>')` long enough for the id index.
fn id_prefix(conjunct: &Expr) -> Option<String> {
    let Expr::Call(Function::StartsWith, arguments) = conjunct else {
        return None;
    };
    let [
        Expr::Path(path),
        Expr::Literal(serde_json::Value::String(prefix)),
    ] = arguments.as_slice()
    else {
        return None;
    };
    let is_device_id = matches!(path.segments.as_slice(), [Segment::Field(f)] if f == "deviceId");
    (is_device_id && prefix.chars().count() >= tag_index::ID_PREFIX_CHARS).then(|| prefix.clone())
}

/// The index entry of a conjunct `tags.<path> = <literal>` (a string, number or boolean), if it
/// is one.
fn tag_equality(conjunct: &Expr) -> Option<String> {
    let Expr::Binary(BinaryOp::Eq, left, right) = conjunct else {
        return None;
    };
    let ((Expr::Path(path), Expr::Literal(value)) | (Expr::Literal(value), Expr::Path(path))) =
        (left.as_ref(), right.as_ref())
    else {
        return None;
    };
    let (Some(Segment::Field(root)), rest) = (path.segments.first(), &path.segments[1..]) else {
        return None;
    };
    if root != "tags" || rest.is_empty() {
        return None;
    }
    let names = rest
        .iter()
        .map(|s| match s {
            Segment::Field(name) => Some(name.as_str()),
            Segment::Index(_) => None,
        })
        .collect::<Option<Vec<&str>>>()?;
    tag_index::entry(&names, value)
}

/// The tag index serves a condition with top-level tag equalities among its `AND`ed parts;
/// anything else reads the registry.
pub(crate) fn plan(query: &Query) -> Plan {
    let entries: BTreeSet<String> = query
        .filter
        .iter()
        .flat_map(Expr::conjuncts)
        .filter_map(tag_equality)
        .collect();
    if !entries.is_empty() {
        return Plan::Tagged(entries.into_iter().collect());
    }
    // The longest prefix narrows most.
    query
        .filter
        .iter()
        .flat_map(Expr::conjuncts)
        .filter_map(id_prefix)
        .max_by_key(String::len)
        .map_or(Plan::Scan, Plan::IdPrefix)
}

/// One entry's devices, read forward a page at a time.
struct Cursor<'a> {
    entry: &'a str,
    buffered: VecDeque<DeviceId>,
    /// Where the next page starts (exclusive).
    next_after: Option<DeviceId>,
    exhausted: bool,
}

impl<'a> Cursor<'a> {
    fn new(entry: &'a str, after: Option<&DeviceId>) -> Self {
        Self {
            entry,
            buffered: VecDeque::new(),
            next_after: after.cloned(),
            exhausted: false,
        }
    }

    /// The first device at or after `x` (`inclusive`) or strictly after it; `None` when the
    /// entry has no more. `Err(None)` when the store keeps no index.
    async fn seek<T: TwinStore>(
        &mut self,
        twins: &T,
        x: Option<&DeviceId>,
        inclusive: bool,
    ) -> Result<Option<DeviceId>, Option<StoreError>> {
        loop {
            while let Some(front) = self.buffered.front() {
                let behind = x.is_some_and(|x| {
                    if inclusive {
                        front.as_str() < x.as_str()
                    } else {
                        front.as_str() <= x.as_str()
                    }
                });
                if !behind {
                    return Ok(Some(front.clone()));
                }
                self.buffered.pop_front();
            }
            if self.exhausted {
                return Ok(None);
            }
            let IdPage { ids, more_after } = twins
                .tagged(self.entry, INDEX_PAGE, self.next_after.as_ref())
                .await
                .map_err(Some)?
                .ok_or(None)?;
            self.exhausted = more_after.is_none();
            self.next_after = more_after.or_else(|| ids.last().cloned());
            self.buffered.extend(ids);
        }
    }
}

/// `Ok(None)` when the store keeps no index, else the store's failure.
fn no_index_or(error: Option<StoreError>) -> Result<Option<IdPage>, StoreError> {
    error.map_or(Ok(None), Err)
}

/// Up to `limit` devices after `after` that every entry has, in id order, and whether more may
/// follow (the last one returned). `None` when the store keeps no tag index.
pub(crate) async fn intersect<T: TwinStore>(
    twins: &T,
    entries: &[String],
    limit: usize,
    after: Option<&DeviceId>,
) -> Result<Option<IdPage>, StoreError> {
    let mut cursors: Vec<Cursor> = entries.iter().map(|e| Cursor::new(e, after)).collect();
    let mut ids = Vec::new();
    let exhausted = |ids: Vec<DeviceId>| {
        Ok(Some(IdPage {
            ids,
            more_after: None,
        }))
    };
    let Some(first) = cursors.first_mut() else {
        return exhausted(ids);
    };
    let mut x = match first.seek(twins, after, false).await {
        Ok(Some(x)) => x,
        Ok(None) => return exhausted(ids),
        Err(e) => return no_index_or(e),
    };
    loop {
        let mut agreed = true;
        for cursor in cursors.iter_mut() {
            match cursor.seek(twins, Some(&x), true).await {
                Ok(Some(y)) if y == x => {}
                Ok(Some(y)) => {
                    x = y;
                    agreed = false;
                    break;
                }
                Ok(None) => return exhausted(ids),
                Err(e) => return no_index_or(e),
            }
        }
        if !agreed {
            continue;
        }
        ids.push(x.clone());
        if ids.len() >= limit {
            return Ok(Some(IdPage {
                more_after: Some(x),
                ids,
            }));
        }
        match cursors[0].seek(twins, Some(&x), false).await {
            Ok(Some(next)) => x = next,
            Ok(None) => return exhausted(ids),
            Err(e) => return no_index_or(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use hub_shared::domain::timestamp::Timestamp;
    use hub_shared::domain::twin::{SectionKind, Twin};
    use hub_shared::fakes::InMemoryTwins;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn intersections_page_in_id_order_through_every_entry() {
        let twins = InMemoryTwins::default();
        for i in 0..40 {
            let mut twin = Twin::new("g1");
            twin.patch(
                SectionKind::Tags,
                &json!({ "a": i % 2, "b": format!("b{}", i % 3) }),
                Timestamp::NEVER,
            )
            .unwrap();
            let id = DeviceId::parse(&format!("d-{i:02}")).unwrap();
            twins.put_twin(&id, &twin, None, None).await.unwrap();
        }
        let entries = vec!["a=0".to_owned(), "b=\"b0\"".to_owned()];
        let mut found = Vec::new();
        let mut after: Option<DeviceId> = None;
        loop {
            let page = intersect(&twins, &entries, 3, after.as_ref())
                .await
                .unwrap()
                .expect("the fake keeps an index");
            found.extend(page.ids.iter().map(|id| id.to_string()));
            match page.more_after {
                Some(more) => after = Some(more),
                None => break,
            }
        }
        let expected: Vec<String> = (0..40)
            .filter(|i| i % 6 == 0)
            .map(|i| format!("d-{i:02}"))
            .collect();
        assert_eq!(found, expected);
        let none = intersect(&twins, &["a=7".to_owned(), "b=\"b0\"".to_owned()], 3, None)
            .await
            .unwrap()
            .unwrap();
        assert!(none.ids.is_empty() && none.more_after.is_none());
    }

    #[test]
    fn an_id_prefix_of_two_characters_or_more_reads_the_id_index() {
        let plan_of = |q: &str| plan(&hub_shared::query::parse_query(q).unwrap());
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'pump-1')"),
            Plan::IdPrefix("pump-1".into())
        );
        assert_eq!(
            plan_of(
                "SELECT * FROM devices WHERE startswith(deviceId, 'pu') AND STARTSWITH(deviceId, 'pump') AND status = 'enabled'"
            ),
            Plan::IdPrefix("pump".into()),
            "the longest prefix"
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'p')"),
            Plan::Scan,
            "one character is too short"
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'pu') OR status = 'x'"),
            Plan::Scan
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE STARTSWITH(tags.name, 'pu')"),
            Plan::Scan
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'pu') AND tags.site = 'a'"),
            Plan::Tagged(vec!["site=\"a\"".into()]),
            "a tag equality wins"
        );
    }

    #[test]
    fn plans_use_every_tag_equality_and_nothing_else() {
        let plan_of = |q: &str| plan(&hub_shared::query::parse_query(q).unwrap());
        assert_eq!(plan_of("SELECT * FROM devices"), Plan::Scan);
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE tags.x > 1"),
            Plan::Scan
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE tags.x = 1 OR tags.y = 2"),
            Plan::Scan
        );
        assert_eq!(
            plan_of(
                "SELECT * FROM devices WHERE tags.x = 1 AND 'b' = tags.y.z AND status = 'enabled'"
            ),
            Plan::Tagged(vec!["x=1".into(), "y.z=\"b\"".into()])
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE Tags.x = 1"),
            Plan::Scan
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE tags.x[0] = 1"),
            Plan::Scan
        );
    }
}
