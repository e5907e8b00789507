//! Tokens of Azure IoT Hub's query language, each with where it starts, so that an error can say
//! where the problem is.

use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A name: `deviceId`, `tags`, `$version`, `$body`, and keywords (matched case-insensitively
    /// by the parser, so a property may still be called `select`).
    Name(String),
    Number(f64),
    Text(String),
    Symbol(&'static str),
    End,
}

impl Token {
    pub fn describe(&self) -> String {
        match self {
            Token::Name(name) => format!("'{name}'"),
            Token::Number(n) => format!("the number {n}"),
            Token::Text(_) => "a string".to_owned(),
            Token::Symbol(s) => format!("'{s}'"),
            Token::End => "the end of the query".to_owned(),
        }
    }
}

/// A token and the character offset (0-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub at: usize,
}

const SYMBOLS: [&str; 18] = [
    "!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", "[", "]", ",", ".", "*", "+", "-", "/", "%",
];

pub fn tokens(text: &str) -> Result<Vec<Spanned>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
                // Routing's system properties are spelled with hyphens (`$iothub-enqueuedtime`,
                // `$dt-dataschema`); only a `$` name takes them, and only before a letter, so
                // `$version-1` is still a subtraction.
                if c == '$'
                    && chars.get(i) == Some(&'-')
                    && chars.get(i + 1).is_some_and(|n| n.is_alphabetic())
                {
                    i += 1;
                }
            }
            out.push(Spanned {
                token: Token::Name(chars[start..i].iter().collect()),
                at,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j], '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let literal: String = chars[start..i].iter().collect();
            let number = literal
                .parse::<f64>()
                .map_err(|_| QueryError::at(at, format!("'{literal}' is not a number")))?;
            out.push(Spanned {
                token: Token::Number(number),
                at,
            });
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(QueryError::at(at, "this string is never closed")),
                    Some('\\') => {
                        let escaped = chars.get(i + 1).copied().ok_or_else(|| {
                            QueryError::at(i, "a string cannot end with a backslash")
                        })?;
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            out.push(Spanned {
                token: Token::Text(value),
                at,
            });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| QueryError::at(at, format!("unexpected character '{c}'")))?;
            i += symbol.chars().count();
            out.push(Spanned {
                token: Token::Symbol(symbol),
                at,
            });
        }
    }
    out.push(Spanned {
        token: Token::End,
        at: chars.len(),
    });
    Ok(out)
}
