//! Printing results: JSON documents for scripts, tables and text for people.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

use crate::cli::Output;

pub struct Printer {
    pub output: Output,
}

impl Printer {
    pub fn new(output: Output) -> Self {
        Self { output }
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// A document: pretty JSON either way (JSON is what a twin or a rule is).
    pub fn document(&self, value: &Value) {
        if self.json() {
            println!("{value}");
        } else {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        }
    }

    /// A line of text, or the value as JSON.
    pub fn line(&self, text: &str, value: &Value) {
        if self.json() {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    /// Rows with the given columns (taken from each row's JSON by key), or the rows as a JSON
    /// array.
    pub fn table(&self, columns: &[(&str, &str)], rows: &[Value]) {
        if self.json() {
            println!("{}", Value::Array(rows.to_vec()));
            return;
        }
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(columns.iter().map(|(title, _)| *title));
        for row in rows {
            table.add_row(columns.iter().map(|(_, path)| cell(row, path)));
        }
        println!("{table}");
    }
}

/// The value at a dotted path, as a cell.
fn cell(row: &Value, path: &str) -> String {
    let value = path
        .split('.')
        .try_fold(row, |value, key| value.get(key))
        .unwrap_or(&Value::Null);
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{:.2}", f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
