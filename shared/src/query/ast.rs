//! What a parsed query or condition is.

use serde_json::Value;

/// One step of a path: a property name, or an array position (`[0]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// A path into a document: `tags.location.region`, `properties.reported.$metadata`,
/// `$body.readings[0]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub segments: Vec<Segment>,
}

impl Path {
    /// The path's first name (`tags` in `tags.site`).
    pub fn root(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// The last property name, which names a projected value in a result.
    pub fn last_field(&self) -> Option<&str> {
        self.segments.iter().rev().find_map(|s| match s {
            Segment::Field(name) => Some(name.as_str()),
            Segment::Index(_) => None,
        })
    }

    /// The dotted text of the path, as written in the language.
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The built-in functions of Azure's twin and routing queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    IsDefined,
    IsNull,
    IsBool,
    IsNumber,
    IsString,
    IsObject,
    IsArray,
    IsPrimitive,
    StartsWith,
    EndsWith,
    Contains,
    Lower,
    Upper,
    Length,
    Concat,
    Substring,
    IndexOf,
    Abs,
    Ceiling,
    Floor,
    Sign,
    Sqrt,
    Square,
    Exp,
    Power,
}

impl Function {
    /// The function a name stands for, with how many arguments it takes (least, most).
    pub fn named(name: &str) -> Option<(Function, usize, usize)> {
        let f = match name.to_ascii_uppercase().as_str() {
            "IS_DEFINED" => (Function::IsDefined, 1, 1),
            "IS_NULL" => (Function::IsNull, 1, 1),
            "IS_BOOL" => (Function::IsBool, 1, 1),
            "IS_NUMBER" => (Function::IsNumber, 1, 1),
            "IS_STRING" => (Function::IsString, 1, 1),
            "IS_OBJECT" => (Function::IsObject, 1, 1),
            "IS_ARRAY" => (Function::IsArray, 1, 1),
            "IS_PRIMITIVE" => (Function::IsPrimitive, 1, 1),
            // Twin queries spell them STARTSWITH/ENDSWITH, routing queries STARTS_WITH/ENDS_WITH.
            "STARTSWITH" | "STARTS_WITH" => (Function::StartsWith, 2, 2),
            "ENDSWITH" | "ENDS_WITH" => (Function::EndsWith, 2, 2),
            "CONTAINS" => (Function::Contains, 2, 2),
            "LOWER" => (Function::Lower, 1, 1),
            "UPPER" => (Function::Upper, 1, 1),
            "LENGTH" => (Function::Length, 1, 1),
            "CONCAT" => (Function::Concat, 1, usize::MAX),
            "SUBSTRING" => (Function::Substring, 2, 3),
            "INDEX_OF" => (Function::IndexOf, 2, 2),
            "ABS" => (Function::Abs, 1, 1),
            "CEILING" => (Function::Ceiling, 1, 1),
            "FLOOR" => (Function::Floor, 1, 1),
            "SIGN" => (Function::Sign, 1, 1),
            "SQRT" => (Function::Sqrt, 1, 1),
            "SQUARE" => (Function::Square, 1, 1),
            "EXP" => (Function::Exp, 1, 1),
            "POWER" => (Function::Power, 2, 2),
            _ => return None,
        };
        Some(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    List(Vec<Expr>),
    Path(Path),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `value IN [..]`, or `NIN` / `NOT IN` when `negated`.
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Call(Function, Vec<Expr>),
}

impl Expr {
    /// The conjuncts of a condition: `a AND (b AND c)` is `[a, b, c]`.
    pub fn conjuncts(&self) -> Vec<&Expr> {
        match self {
            Expr::Binary(BinaryOp::And, left, right) => {
                let mut all = left.conjuncts();
                all.extend(right.conjuncts());
                all
            }
            other => vec![other],
        }
    }

    /// Every path the expression reads.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Path(path) => out.push(path),
            Expr::List(items) | Expr::Call(_, items) => {
                items.iter().for_each(|e| e.collect_paths(out))
            }
            Expr::Not(e) | Expr::Negate(e) => e.collect_paths(out),
            Expr::Binary(_, a, b) => {
                a.collect_paths(out);
                b.collect_paths(out);
            }
            Expr::In { value, list, .. } => {
                value.collect_paths(out);
                list.iter().for_each(|e| e.collect_paths(out));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Projected {
    Path(Path),
    /// `COUNT()` has no path; the others aggregate a path.
    Aggregate(Aggregate, Option<Path>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub value: Projected,
    /// The property the value takes in each result.
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    All,
    Items(Vec<Projection>),
}

/// A query over a collection: `SELECT ... FROM devices [WHERE ...] [GROUP BY ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    /// `SELECT TOP n`: at most this many results in all.
    pub top: Option<usize>,
    /// `devices`, `devices.jobs`, ...
    pub from: String,
    pub filter: Option<Expr>,
    pub group_by: Vec<Path>,
}

impl Query {
    /// Whether results are groups or aggregates rather than documents.
    pub fn aggregates(&self) -> bool {
        !self.group_by.is_empty()
            || matches!(&self.select, Select::Items(items)
                if items.iter().any(|p| matches!(p.value, Projected::Aggregate(..))))
    }
}
