//! What a query answers: each matching document as selected, or one row per group with its
//! aggregates.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ast::{Aggregate, Projected, Query, Select};
use super::eval::{number, order, walk};

/// A matching document as the query selects it (`SELECT *`: the whole document; otherwise an
/// object of the selected values, leaving out those the document does not define).
pub fn project(query: &Query, document: &Value) -> Value {
    match &query.select {
        Select::All => document.clone(),
        Select::Items(items) => {
            let mut out = Map::new();
            for item in items {
                if let Projected::Path(path) = &item.value
                    && let Some(value) = walk(document, &path.segments)
                {
                    out.insert(item.alias.clone(), value.clone());
                }
            }
            Value::Object(out)
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Accumulator {
    count: u64,
    sum: f64,
    numbers: u64,
    min: Option<Value>,
    max: Option<Value>,
}

/// The groups of an aggregate query, fed one matching document at a time. Rows come out
/// ordered by their group values, so pages of them are stable.
#[derive(Debug, Default)]
pub struct Groups {
    rows: BTreeMap<String, (Vec<Option<Value>>, Vec<Accumulator>)>,
}

impl Groups {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, query: &Query, document: &Value) {
        let Select::Items(items) = &query.select else {
            return;
        };
        let key: Vec<Option<Value>> = query
            .group_by
            .iter()
            .map(|path| walk(document, &path.segments).cloned())
            .collect();
        let text = serde_json::to_string(&key).unwrap_or_default();
        let (_, accumulators) = self
            .rows
            .entry(text)
            .or_insert_with(|| (key, vec![Accumulator::default(); items.len()]));
        for (item, acc) in items.iter().zip(accumulators.iter_mut()) {
            acc.count += 1;
            let Projected::Aggregate(_, Some(path)) = &item.value else {
                continue;
            };
            let Some(value) = walk(document, &path.segments) else {
                continue;
            };
            if let Some(n) = value.as_f64() {
                acc.sum += n;
                acc.numbers += 1;
            }
            let lower = acc
                .min
                .as_ref()
                .is_none_or(|m| order(value, m) == Some(std::cmp::Ordering::Less));
            if lower && (value.is_number() || value.is_string()) {
                acc.min = Some(value.clone());
            }
            let higher = acc
                .max
                .as_ref()
                .is_none_or(|m| order(value, m) == Some(std::cmp::Ordering::Greater));
            if higher && (value.is_number() || value.is_string()) {
                acc.max = Some(value.clone());
            }
        }
    }

    /// One row per group (one row in all when there is no GROUP BY, even with no match).
    pub fn rows(&self, query: &Query) -> Vec<Value> {
        let Select::Items(items) = &query.select else {
            return Vec::new();
        };
        let empty = (
            vec![None; query.group_by.len()],
            vec![Accumulator::default(); items.len()],
        );
        let mut groups: Vec<&(Vec<Option<Value>>, Vec<Accumulator>)> = self.rows.values().collect();
        if groups.is_empty() && query.group_by.is_empty() {
            groups.push(&empty);
        }
        groups
            .into_iter()
            .map(|(key, accumulators)| {
                let mut row = Map::new();
                for (item, acc) in items.iter().zip(accumulators) {
                    let value = match &item.value {
                        Projected::Path(path) => query
                            .group_by
                            .iter()
                            .position(|g| g == path)
                            .and_then(|i| key[i].clone()),
                        Projected::Aggregate(aggregate, _) => match aggregate {
                            Aggregate::Count => Some(Value::from(acc.count)),
                            Aggregate::Sum => number(acc.sum),
                            Aggregate::Avg => (acc.numbers > 0)
                                .then(|| number(acc.sum / acc.numbers as f64))
                                .flatten(),
                            Aggregate::Min => acc.min.clone(),
                            Aggregate::Max => acc.max.clone(),
                        },
                    };
                    if let Some(value) = value {
                        row.insert(item.alias.clone(), value);
                    }
                }
                Value::Object(row)
            })
            .collect()
    }
}
