//! Azure IoT Hub's query language: `SELECT ... FROM devices WHERE ... GROUP BY ...` over device
//! twins, and the same conditions over messages for routing. Parsing is separate from where the
//! documents come from (the registry reads them from DynamoDB a page at a time); evaluation works
//! on anything that resolves paths ([`Document`]).

pub mod ast;
mod eval;
mod lex;
mod parse;
mod results;

pub use ast::{Expr, Path, Query, Segment, Select};
pub use eval::{Document, equals, evaluate, holds, walk};
pub use parse::{MAX_TEXT_CHARS, parse_condition, parse_query};
pub use results::{Groups, project};

/// A query that does not parse or cannot run, with the character where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .at + 1)]
pub struct QueryError {
    /// 0-based character offset into the text.
    pub at: usize,
    pub message: String,
}

impl QueryError {
    pub fn at(at: usize, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }

    /// The error with its line and column in `text` (both from 1), as a person reads it.
    pub fn located(&self, text: &str) -> String {
        let before: String = text.chars().take(self.at).collect();
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
        format!("line {line}, column {column}: {}", self.message)
    }
}

#[cfg(test)]
mod tests;
