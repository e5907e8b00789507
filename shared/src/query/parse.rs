//! A recursive-descent parser for Azure IoT Hub's query language: whole queries over twins and
//! jobs, and bare conditions (message routing). Keywords are case-insensitive; property names
//! are not.

use serde_json::Value;

use super::QueryError;
use super::ast::{Aggregate, BinaryOp, Expr, Function, Path, Projected, Projection, Query, Select};
use super::lex::{Spanned, Token, tokens};

/// Longest query or condition text accepted (Azure's limit for a query is 8 KB).
pub const MAX_TEXT_CHARS: usize = 8 * 1024;
/// Deepest nesting of parentheses and operators, so a hostile text cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Binary operators in a query, at most. A chain `a + b + c ...` is as deep a tree as it is long,
/// and evaluating (or dropping) one of 8,000 characters overflowed a 2 MiB thread stack (found
/// by fuzzing).
const MAX_OPERATORS: usize = 256;

const KEYWORDS: [&str; 13] = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "NOT", "IN", "NIN", "TOP", "ON",
];

pub fn parse_query(text: &str) -> Result<Query, QueryError> {
    let mut parser = Parser::new(text)?;
    let query = parser.query()?;
    parser.expect_end()?;
    Ok(query)
}

/// A condition alone, as message routes are written (`$body.temperature > 30 AND ...`).
pub fn parse_condition(text: &str) -> Result<Expr, QueryError> {
    let mut parser = Parser::new(text)?;
    let condition = parser.expr()?;
    parser.expect_end()?;
    Ok(condition)
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
    operators: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, QueryError> {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(QueryError::at(
                MAX_TEXT_CHARS,
                format!("a query is at most {MAX_TEXT_CHARS} characters"),
            ));
        }
        Ok(Self {
            tokens: tokens(text)?,
            next: 0,
            depth: 0,
            operators: 0,
        })
    }

    fn peek(&self) -> &Spanned {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.next + ahead).min(self.tokens.len() - 1)].token
    }

    fn advance(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn error(&self, expected: &str) -> QueryError {
        let found = self.peek();
        QueryError::at(
            found.at,
            format!("expected {expected}, found {}", found.token.describe()),
        )
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().token, Token::Name(n) if n.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), QueryError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.error(keyword))
        }
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(&self.peek().token, Token::Symbol(s) if *s == symbol)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = self.is_symbol(symbol);
        if found {
            self.advance();
        }
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), QueryError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(self.error(&format!("'{symbol}'")))
        }
    }

    fn expect_end(&self) -> Result<(), QueryError> {
        match self.peek().token {
            Token::End => Ok(()),
            _ => Err(self.error("the end of the query")),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_keyword("SELECT")?;
        let top = if self.eat_keyword("TOP") {
            let at = self.peek().at;
            match self.advance().token {
                Token::Number(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1e9 => Some(n as usize),
                _ => return Err(QueryError::at(at, "TOP takes a whole number of at least 1")),
            }
        } else {
            None
        };
        let select = if self.eat_symbol("*") {
            Select::All
        } else {
            let mut items = vec![self.projection(1)?];
            while self.eat_symbol(",") {
                items.push(self.projection(items.len() + 1)?);
            }
            Select::Items(items)
        };
        self.expect_keyword("FROM")?;
        let from = self.path()?.dotted();
        let filter = if self.eat_keyword("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_keyword("GROUP") {
            self.expect_keyword("BY")?;
            group_by.push(self.path()?);
            while self.eat_symbol(",") {
                group_by.push(self.path()?);
            }
        }
        let query = Query {
            select,
            top,
            from,
            filter,
            group_by,
        };
        check_grouping(&query)?;
        Ok(query)
    }

    fn projection(&mut self, position: usize) -> Result<Projection, QueryError> {
        let aggregate = match &self.peek().token {
            Token::Name(name) if matches!(self.peek_at(1), Token::Symbol("(")) => {
                match name.to_ascii_uppercase().as_str() {
                    "COUNT" => Some(Aggregate::Count),
                    "SUM" => Some(Aggregate::Sum),
                    "AVG" => Some(Aggregate::Avg),
                    "MIN" => Some(Aggregate::Min),
                    "MAX" => Some(Aggregate::Max),
                    _ => return Err(self.error("a property or an aggregate (COUNT, SUM, ...)")),
                }
            }
            _ => None,
        };
        let value = match aggregate {
            Some(aggregate) => {
                self.advance();
                self.expect_symbol("(")?;
                let path = if aggregate == Aggregate::Count {
                    None
                } else {
                    Some(self.path()?)
                };
                self.expect_symbol(")")?;
                Projected::Aggregate(aggregate, path)
            }
            None => Projected::Path(self.path()?),
        };
        let alias = if self.eat_keyword("AS") {
            match self.advance().token {
                Token::Name(name) => name,
                _ => return Err(self.error("a name after AS")),
            }
        } else {
            match &value {
                Projected::Path(path) => path.last_field().unwrap_or("$1").to_owned(),
                Projected::Aggregate(..) => format!("${position}"),
            }
        };
        Ok(Projection { value, alias })
    }

    fn name(&mut self) -> Result<String, QueryError> {
        match &self.peek().token {
            Token::Name(name) if !KEYWORDS.iter().any(|k| name.eq_ignore_ascii_case(k)) => {
                let name = name.clone();
                self.advance();
                Ok(name)
            }
            _ => Err(self.error("a property name")),
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let first = self.name()?;
        self.path_from(first)
    }

    fn path_from(&mut self, first: String) -> Result<Path, QueryError> {
        use super::ast::Segment;
        let mut segments = vec![Segment::Field(first)];
        loop {
            if self.eat_symbol(".") {
                // After a dot, any name is a property, keywords included (`tags.from`).
                match self.advance().token {
                    Token::Name(name) => segments.push(Segment::Field(name)),
                    _ => {
                        self.next -= 1;
                        return Err(self.error("a property name after '.'"));
                    }
                }
            } else if self.eat_symbol("[") {
                let at = self.peek().at;
                match self.advance().token {
                    Token::Number(n) if n >= 0.0 && n.fract() == 0.0 => {
                        segments.push(Segment::Index(n as usize))
                    }
                    Token::Text(name) => segments.push(Segment::Field(name)),
                    _ => {
                        return Err(QueryError::at(
                            at,
                            "expected an array position or a quoted property name inside [ ]",
                        ));
                    }
                }
                self.expect_symbol("]")?;
            } else {
                return Ok(Path { segments });
            }
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::at(
                self.peek().at,
                format!("the query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// Counts one more binary operator against [`MAX_OPERATORS`].
    fn operator(&mut self) -> Result<(), QueryError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(QueryError::at(
                self.peek().at,
                format!("the query has more than {MAX_OPERATORS} operators"),
            ));
        }
        Ok(())
    }

    pub fn expr(&mut self) -> Result<Expr, QueryError> {
        self.nested(|p| {
            let mut left = p.and()?;
            while p.eat_keyword("OR") {
                p.operator()?;
                let right = p.and()?;
                left = Expr::Binary(BinaryOp::Or, Box::new(left), Box::new(right));
            }
            Ok(left)
        })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            self.operator()?;
            let right = self.not()?;
            left = Expr::Binary(BinaryOp::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_keyword("NOT") {
            let inner = self.nested(|p| p.not())?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.additive()?;
        let op = match &self.peek().token {
            Token::Symbol("=") => Some(BinaryOp::Eq),
            Token::Symbol("!=") | Token::Symbol("<>") => Some(BinaryOp::Ne),
            Token::Symbol("<") => Some(BinaryOp::Lt),
            Token::Symbol("<=") => Some(BinaryOp::Le),
            Token::Symbol(">") => Some(BinaryOp::Gt),
            Token::Symbol(">=") => Some(BinaryOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.additive()?;
            return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.eat_keyword("NIN") {
            true
        } else if self.is_keyword("NOT")
            && matches!(self.peek_at(1), Token::Name(n) if n.eq_ignore_ascii_case("IN"))
        {
            self.advance();
            self.advance();
            true
        } else if self.eat_keyword("IN") {
            false
        } else {
            return Ok(left);
        };
        self.expect_symbol("[")?;
        let list = self.list_items()?;
        Ok(Expr::In {
            value: Box::new(left),
            list,
            negated,
        })
    }

    /// The items of a `[ ... ]` list, after its `[`, up to and including its `]`.
    fn list_items(&mut self) -> Result<Vec<Expr>, QueryError> {
        let mut items = Vec::new();
        if self.eat_symbol("]") {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_symbol("]") {
                return Ok(items);
            }
            if !self.eat_symbol(",") {
                return Err(self.error("',' or ']'"));
            }
        }
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat_symbol("+") {
                BinaryOp::Add
            } else if self.eat_symbol("-") {
                BinaryOp::Sub
            } else {
                return Ok(left);
            };
            self.operator()?;
            let right = self.multiplicative()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_symbol("*") {
                BinaryOp::Mul
            } else if self.eat_symbol("/") {
                BinaryOp::Div
            } else if self.eat_symbol("%") {
                BinaryOp::Rem
            } else {
                return Ok(left);
            };
            self.operator()?;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_symbol("-") {
            let inner = self.nested(|p| p.unary())?;
            return Ok(match inner {
                Expr::Literal(Value::Number(n)) => {
                    Expr::Literal(number(-n.as_f64().unwrap_or(0.0)))
                }
                other => Expr::Negate(Box::new(other)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let at = self.peek().at;
        match self.peek().token.clone() {
            Token::Number(n) => {
                self.advance();
                Ok(Expr::Literal(number(n)))
            }
            Token::Text(text) => {
                self.advance();
                Ok(Expr::Literal(Value::String(text)))
            }
            Token::Symbol("(") => {
                self.advance();
                let inner = self.expr()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Token::Symbol("[") => {
                self.advance();
                Ok(Expr::List(self.list_items()?))
            }
            Token::Name(name) if matches!(self.peek_at(1), Token::Symbol("(")) => {
                let (function, least, most) = Function::named(&name).ok_or_else(|| {
                    QueryError::at(at, format!("there is no function called {name}"))
                })?;
                self.advance();
                self.advance();
                let args = self.nested(|p| {
                    let mut args = Vec::new();
                    if !p.eat_symbol(")") {
                        loop {
                            args.push(p.expr()?);
                            if p.eat_symbol(")") {
                                break;
                            }
                            if !p.eat_symbol(",") {
                                return Err(p.error("',' or ')'"));
                            }
                        }
                    }
                    Ok(args)
                })?;
                if args.len() < least || args.len() > most {
                    let wanted = if least == most {
                        format!("{least}")
                    } else if most == usize::MAX {
                        format!("at least {least}")
                    } else {
                        format!("{least} to {most}")
                    };
                    return Err(QueryError::at(
                        at,
                        format!(
                            "{} takes {wanted} argument(s), not {}",
                            name.to_ascii_uppercase(),
                            args.len()
                        ),
                    ));
                }
                Ok(Expr::Call(function, args))
            }
            Token::Name(name) if name.eq_ignore_ascii_case("true") => {
                self.advance();
                Ok(Expr::Literal(Value::Bool(true)))
            }
            Token::Name(name) if name.eq_ignore_ascii_case("false") => {
                self.advance();
                Ok(Expr::Literal(Value::Bool(false)))
            }
            Token::Name(name) if name.eq_ignore_ascii_case("null") => {
                self.advance();
                Ok(Expr::Literal(Value::Null))
            }
            Token::Name(_) => Ok(Expr::Path(self.path()?)),
            _ => Err(self.error("a value, a property or '('")),
        }
    }
}

/// A whole number stays an integer in JSON (`5`, not `5.0`), so results echo what was written.
fn number(n: f64) -> Value {
    super::eval::number(n).unwrap_or(Value::Null)
}

/// With GROUP BY, every projected property must be one of the groups.
fn check_grouping(query: &Query) -> Result<(), QueryError> {
    let Select::Items(items) = &query.select else {
        if !query.group_by.is_empty() {
            return Err(QueryError::at(
                0,
                "SELECT * cannot be grouped; select the grouped properties and aggregates",
            ));
        }
        return Ok(());
    };
    if !query.aggregates() {
        return Ok(());
    }
    for item in items {
        if let Projected::Path(path) = &item.value
            && !query.group_by.contains(path)
        {
            return Err(QueryError::at(
                0,
                format!(
                    "{} is selected beside an aggregate but is not in GROUP BY",
                    path.dotted()
                ),
            ));
        }
    }
    Ok(())
}
