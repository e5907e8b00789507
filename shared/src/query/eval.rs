//! Evaluating conditions and projections over JSON documents, with the language's rules:
//! a missing property is *undefined* (not null), comparisons between different types are
//! undefined, and a condition holds only when it is `true`.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Function, Path, Segment};

/// Where paths are looked up: a twin document, or a message with its properties and twin.
pub trait Document {
    fn resolve(&self, path: &Path) -> Option<Cow<'_, Value>>;
}

impl Document for Value {
    fn resolve(&self, path: &Path) -> Option<Cow<'_, Value>> {
        walk(self, &path.segments).map(Cow::Borrowed)
    }
}

/// Follows `segments` from `root`. A top-level name that is not there exactly is looked up
/// without regard to case, as Azure matches `DeviceID` to `deviceId`.
pub fn walk<'a>(root: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    let mut current = root;
    for (i, segment) in segments.iter().enumerate() {
        current = match (segment, current) {
            (Segment::Field(name), Value::Object(map)) => match map.get(name) {
                Some(v) => v,
                None if i == 0 => map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1,
                None => return None,
            },
            (Segment::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Whether `condition` is true for `document` (undefined and false are both "no").
pub fn holds(condition: &Expr, document: &impl Document) -> bool {
    matches!(
        evaluate(condition, document).as_deref(),
        Some(Value::Bool(true))
    )
}

/// The value of `expr` for `document`; `None` is undefined.
pub fn evaluate<'a, D: Document>(expr: &'a Expr, document: &'a D) -> Option<Cow<'a, Value>> {
    match expr {
        Expr::Literal(value) => Some(Cow::Borrowed(value)),
        Expr::List(items) => items
            .iter()
            .map(|item| evaluate(item, document).map(Cow::into_owned))
            .collect::<Option<Vec<_>>>()
            .map(|values| Cow::Owned(Value::Array(values))),
        Expr::Path(path) => document.resolve(path),
        Expr::Not(inner) => match evaluate(inner, document)?.as_ref() {
            Value::Bool(b) => Some(boolean(!b)),
            _ => None,
        },
        Expr::Negate(inner) => {
            let n = evaluate(inner, document)?.as_f64()?;
            Some(Cow::Owned(number(-n)?))
        }
        Expr::Binary(op, left, right) => binary(*op, left, right, document),
        Expr::In {
            value,
            list,
            negated,
        } => {
            let value = evaluate(value, document)?;
            let found = list.iter().any(|item| {
                evaluate(item, document).is_some_and(|v| equals(&value, &v) == Some(true))
            });
            Some(boolean(found != *negated))
        }
        Expr::Call(function, args) => call(*function, args, document).map(Cow::Owned),
    }
}

fn boolean<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn binary<'a, D: Document>(
    op: BinaryOp,
    left: &'a Expr,
    right: &'a Expr,
    document: &'a D,
) -> Option<Cow<'a, Value>> {
    let as_bool = |v: &Option<Cow<Value>>| match v.as_deref() {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    };
    match op {
        BinaryOp::And => {
            let l = as_bool(&evaluate(left, document));
            if l == Some(false) {
                return Some(boolean(false));
            }
            let r = as_bool(&evaluate(right, document));
            match (l, r) {
                (_, Some(false)) => Some(boolean(false)),
                (Some(true), Some(true)) => Some(boolean(true)),
                _ => None,
            }
        }
        BinaryOp::Or => {
            let l = as_bool(&evaluate(left, document));
            if l == Some(true) {
                return Some(boolean(true));
            }
            let r = as_bool(&evaluate(right, document));
            match (l, r) {
                (_, Some(true)) => Some(boolean(true)),
                (Some(false), Some(false)) => Some(boolean(false)),
                _ => None,
            }
        }
        BinaryOp::Eq | BinaryOp::Ne => {
            let (l, r) = (evaluate(left, document)?, evaluate(right, document)?);
            let equal = equals(&l, &r)?;
            Some(boolean(equal == (op == BinaryOp::Eq)))
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let (l, r) = (evaluate(left, document)?, evaluate(right, document)?);
            let ordering = order(&l, &r)?;
            let result = match op {
                BinaryOp::Lt => ordering == Ordering::Less,
                BinaryOp::Le => ordering != Ordering::Greater,
                BinaryOp::Gt => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            };
            Some(boolean(result))
        }
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
            let l = evaluate(left, document)?.as_f64()?;
            let r = evaluate(right, document)?.as_f64()?;
            let result = match op {
                BinaryOp::Add => l + r,
                BinaryOp::Sub => l - r,
                BinaryOp::Mul => l * r,
                BinaryOp::Div if r != 0.0 => l / r,
                BinaryOp::Rem if r != 0.0 => l % r,
                _ => return None,
            };
            number(result).map(Cow::Owned)
        }
    }
}

/// Equality of two values of the same type (numbers by value); `None` across types.
pub fn equals(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(x.as_f64() == y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::Null, Value::Null) => Some(true),
        (Value::Array(x), Value::Array(y)) => {
            Some(x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equals(a, b) == Some(true)))
        }
        (Value::Object(x), Value::Object(y)) => Some(
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equals(v, w) == Some(true))),
        ),
        _ => None,
    }
}

/// Order of two numbers, two strings or two booleans; `None` otherwise.
pub fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A JSON number, whole numbers as integers; `None` for NaN and infinities.
pub fn number(n: f64) -> Option<Value> {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Some(Value::from(n as i64))
    } else {
        serde_json::Number::from_f64(n).map(Value::Number)
    }
}

fn call<D: Document>(function: Function, args: &[Expr], document: &D) -> Option<Value> {
    let arg = |i: usize| args.get(i).and_then(|a| evaluate(a, document));
    let text = |i: usize| match arg(i)?.into_owned() {
        Value::String(s) => Some(s),
        _ => None,
    };
    let num = |i: usize| arg(i)?.as_f64();
    let type_check =
        |check: fn(&Value) -> bool| Some(Value::Bool(arg(0).is_some_and(|v| check(&v))));
    match function {
        Function::IsDefined => Some(Value::Bool(arg(0).is_some())),
        Function::IsNull => type_check(Value::is_null),
        Function::IsBool => type_check(Value::is_boolean),
        Function::IsNumber => type_check(Value::is_number),
        Function::IsString => type_check(Value::is_string),
        Function::IsObject => type_check(Value::is_object),
        Function::IsArray => type_check(Value::is_array),
        Function::IsPrimitive => type_check(|v| !matches!(v, Value::Object(_) | Value::Array(_))),
        Function::StartsWith => Some(Value::Bool(text(0)?.starts_with(&text(1)?))),
        Function::EndsWith => Some(Value::Bool(text(0)?.ends_with(&text(1)?))),
        Function::Contains => Some(Value::Bool(text(0)?.contains(&text(1)?))),
        Function::Lower => Some(Value::String(text(0)?.to_lowercase())),
        Function::Upper => Some(Value::String(text(0)?.to_uppercase())),
        Function::Length => Some(Value::from(text(0)?.chars().count())),
        Function::Concat => (0..args.len())
            .map(text)
            .collect::<Option<String>>()
            .map(Value::String),
        Function::Substring => {
            let s = text(0)?;
            let start = num(1)?;
            if start < 0.0 {
                return None;
            }
            let length = match args.len() {
                3 => num(2)?.max(0.0) as usize,
                _ => usize::MAX,
            };
            Some(Value::String(
                s.chars().skip(start as usize).take(length).collect(),
            ))
        }
        Function::IndexOf => {
            let (s, sub) = (text(0)?, text(1)?);
            let index = s
                .find(&sub)
                .map(|byte| s[..byte].chars().count() as i64)
                .unwrap_or(-1);
            Some(Value::from(index))
        }
        Function::Abs => number(num(0)?.abs()),
        Function::Ceiling => number(num(0)?.ceil()),
        Function::Floor => number(num(0)?.floor()),
        Function::Sign => {
            let n = num(0)?;
            number(if n == 0.0 { 0.0 } else { n.signum() })
        }
        Function::Sqrt => number(num(0)?.sqrt()),
        Function::Square => number(num(0)?.powi(2)),
        Function::Exp => number(num(0)?.exp()),
        Function::Power => number(num(0)?.powf(num(1)?)),
    }
}
