//! The fleet indexing query language (AWS IoT developer guide: "Query
//! syntax"): `field:value` terms with `*` and `?` wildcards and quoted
//! values, ranges (`field:[1 TO 10]`, `{` `}` for exclusive bounds, `*` for
//! an open one) and comparisons (`field>5`, `<`, `>=`, `<=`), `AND`, `OR`,
//! `NOT`, parentheses, and terms side by side meaning `AND`. A value without
//! a field matches the thing (or group) name; `*` alone matches everything.
//!
//! The parser reads characters, never byte offsets, and bounds the length,
//! the number of terms and the nesting, so no input can make it panic or
//! recurse without end. Anything it cannot read is an error that says where.

use std::fmt;

/// The longest query accepted, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 1024;
/// The most terms in one query.
const MAX_TERMS: usize = 100;
/// The deepest nesting of parentheses and `NOT`.
const MAX_DEPTH: usize = 32;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    /// `*`: every document.
    All,
    /// `field:value`; no field means the document's name.
    Match {
        field: Option<String>,
        value: Pattern,
    },
    /// A range or comparison on `field`; `None` is an open end.
    Range {
        field: String,
        lower: Option<Bound>,
        upper: Option<Bound>,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

impl Query {
    /// The query with every term on a field that `indexed` refuses matching
    /// nothing, as a field the index does not hold (a shadow's field when
    /// shadows are not indexed).
    pub(crate) fn restricted(&self, indexed: &dyn Fn(&str) -> bool) -> Query {
        let nothing = || Query::Or(Vec::new());
        match self {
            Query::Match {
                field: Some(field), ..
            }
            | Query::Range { field, .. }
                if !indexed(field) =>
            {
                nothing()
            }
            Query::And(all) => Query::And(all.iter().map(|q| q.restricted(indexed)).collect()),
            Query::Or(any) => Query::Or(any.iter().map(|q| q.restricted(indexed)).collect()),
            Query::Not(inner) => Query::Not(Box::new(inner.restricted(indexed))),
            other => other.clone(),
        }
    }
}

/// A term's value: exact, or with `*` (any run) and `?` (any one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Wildcard(String),
}

impl Pattern {
    fn of(text: String, quoted: bool) -> Pattern {
        if !quoted && text.contains(['*', '?']) {
            Pattern::Wildcard(text)
        } else {
            Pattern::Exact(text)
        }
    }

    /// Whether `value` matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == value,
            Pattern::Wildcard(glob) => glob_matches(glob, value),
        }
    }

    /// The literal text every match starts with.
    pub(crate) fn literal_prefix(&self) -> &str {
        match self {
            Pattern::Exact(exact) => exact,
            Pattern::Wildcard(glob) => glob
                .find(['*', '?'])
                .and_then(|at| glob.get(..at))
                .unwrap_or(""),
        }
    }
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) value: String,
    pub(crate) inclusive: bool,
}

/// Why a query was refused: AWS's `InvalidQueryException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError(pub(crate) String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Glob matching by characters: `*` any run, `?` any one character.
fn glob_matches(glob: &str, value: &str) -> bool {
    let pattern: Vec<char> = glob.chars().collect();
    let text: Vec<char> = value.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    /// A term: `field`, its operator and its value, or a bare value.
    Term(Query),
}

/// Parses `text` into a [`Query`].
pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_QUERY_CHARS {
        return Err(QueryError(format!(
            "The query is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let tokens = tokenize(&chars)?;
    if tokens.is_empty() {
        return Err(QueryError("The query is empty".into()));
    }
    let terms = tokens
        .iter()
        .filter(|t| matches!(t, Token::Term(_)))
        .count();
    if terms > MAX_TERMS {
        return Err(QueryError(format!(
            "The query has more than {MAX_TERMS} terms"
        )));
    }
    let mut parser = Parser { tokens, at: 0 };
    let query = parser.or(0)?;
    if parser.at < parser.tokens.len() {
        return Err(QueryError(format!(
            "Unexpected {} in the query",
            describe(&parser.tokens[parser.at])
        )));
    }
    Ok(query)
}

fn describe(token: &Token) -> &'static str {
    match token {
        Token::Open => "'('",
        Token::Close => "')'",
        Token::And => "AND",
        Token::Or => "OR",
        Token::Not => "NOT",
        Token::Term(_) => "term",
    }
}

/// Characters that end an unquoted word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

fn tokenize(chars: &[char]) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '"' => {
                let (value, next) = quoted(chars, i)?;
                tokens.push(Token::Term(Query::Match {
                    field: None,
                    value: Pattern::Exact(value),
                }));
                i = next;
            }
            _ => {
                let (token, next) = term(chars, i)?;
                tokens.push(token);
                i = next;
            }
        }
    }
    Ok(tokens)
}

/// A quoted value starting at `chars[start] == '"'`; `\"` and `\\` escape.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((value, i + 1)),
            '\\' if i + 1 < chars.len() => {
                value.push(chars[i + 1]);
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError(format!(
        "Unterminated quoted value at character {}",
        start + 1
    )))
}

/// A word, possibly `field<op>value`, starting at `chars[start]`.
fn term(chars: &[char], start: usize) -> Result<(Token, usize), QueryError> {
    // The field: up to an operator or the end of the word.
    let mut i = start;
    while i < chars.len() && !ends_word(chars[i]) && !matches!(chars[i], ':' | '<' | '>' | '=') {
        if matches!(chars[i], '[' | '{' | ']' | '}') {
            return Err(QueryError(format!(
                "Unexpected '{}' at character {}",
                chars[i],
                i + 1
            )));
        }
        i += 1;
    }
    let word: String = chars[start..i].iter().collect();
    if i >= chars.len() || ends_word(chars[i]) {
        let token = match word.as_str() {
            "AND" => Token::And,
            "OR" => Token::Or,
            "NOT" => Token::Not,
            "*" => Token::Term(Query::All),
            _ => Token::Term(Query::Match {
                field: None,
                value: Pattern::of(word, false),
            }),
        };
        return Ok((token, i));
    }
    let field = word;
    if field.is_empty() {
        return Err(QueryError(format!(
            "A term has no field before '{}' at character {}",
            chars[i],
            i + 1
        )));
    }
    let op: String = match (chars[i], chars.get(i + 1)) {
        ('>', Some('=')) => ">=".into(),
        ('<', Some('=')) => "<=".into(),
        (c @ (':' | '>' | '<'), _) => c.to_string(),
        (c, _) => {
            return Err(QueryError(format!(
                "Unexpected '{c}' at character {}",
                i + 1
            )));
        }
    };
    i += op.chars().count();
    if op == ":" && matches!(chars.get(i), Some('[' | '{')) {
        return range(chars, field, i);
    }
    let (value, quoted_value, next) = value(chars, i)?;
    if value.is_empty() && !quoted_value {
        return Err(QueryError(format!(
            "The term {field}{op} has no value (character {})",
            i + 1
        )));
    }
    let bound = |inclusive| {
        Some(Bound {
            value: value.clone(),
            inclusive,
        })
    };
    let query = match op.as_str() {
        ":" => Query::Match {
            field: Some(field),
            value: Pattern::of(value, quoted_value),
        },
        ">" => Query::Range {
            field,
            lower: bound(false),
            upper: None,
        },
        ">=" => Query::Range {
            field,
            lower: bound(true),
            upper: None,
        },
        "<" => Query::Range {
            field,
            lower: None,
            upper: bound(false),
        },
        _ => Query::Range {
            field,
            lower: None,
            upper: bound(true),
        },
    };
    Ok((Token::Term(query), next))
}

/// A term's value at `chars[start]`: quoted or a plain word.
fn value(chars: &[char], start: usize) -> Result<(String, bool, usize), QueryError> {
    if chars.get(start) == Some(&'"') {
        let (value, next) = quoted(chars, start)?;
        return Ok((value, true, next));
    }
    let mut i = start;
    while i < chars.len() && !ends_word(chars[i]) {
        i += 1;
    }
    Ok((chars[start..i].iter().collect(), false, i))
}

/// `[low TO high]`, `{low TO high}` or a mix, at `chars[start]`.
fn range(chars: &[char], field: String, start: usize) -> Result<(Token, usize), QueryError> {
    let lower_inclusive = chars[start] == '[';
    let close = chars[start..]
        .iter()
        .position(|&c| c == ']' || c == '}')
        .map(|at| start + at)
        .ok_or_else(|| QueryError(format!("Unterminated range at character {}", start + 1)))?;
    let upper_inclusive = chars[close] == ']';
    let inside: String = chars[start + 1..close].iter().collect();
    let parts: Vec<&str> = inside.split_whitespace().collect();
    let [low, "TO", high] = parts.as_slice() else {
        return Err(QueryError(format!(
            "A range is [low TO high] or {{low TO high}}, not {:?}",
            inside
        )));
    };
    let bound = |value: &str, inclusive| {
        (value != "*").then(|| Bound {
            value: value.to_owned(),
            inclusive,
        })
    };
    let query = Query::Range {
        field,
        lower: bound(low, lower_inclusive),
        upper: bound(high, upper_inclusive),
    };
    Ok((Token::Term(query), close + 1))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn too_deep(depth: usize) -> Result<(), QueryError> {
        if depth > MAX_DEPTH {
            return Err(QueryError(format!(
                "The query nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn or(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut any = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            any.push(self.and(depth)?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Query::Or(any)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut all = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(Token::And) => {
                    self.at += 1;
                    all.push(self.unary(depth)?);
                }
                // Terms side by side: AND.
                Some(Token::Term(_) | Token::Not | Token::Open) => all.push(self.unary(depth)?),
                _ => break,
            }
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Query::And(all)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Query, QueryError> {
        Self::too_deep(depth)?;
        match self.tokens.get(self.at).cloned() {
            Some(Token::Not) => {
                self.at += 1;
                Ok(Query::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err(QueryError("A '(' is not closed".into()));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Term(query)) => {
                self.at += 1;
                Ok(query)
            }
            Some(other) => Err(QueryError(format!(
                "Expected a term, not {}",
                describe(&other)
            ))),
            None => Err(QueryError("The query ends where a term is expected".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn field(name: &str, value: &str) -> Query {
        Query::Match {
            field: Some(name.into()),
            value: Pattern::of(value.into(), false),
        }
    }

    #[test]
    fn terms_wildcards_and_quotes() {
        assert_eq!(parse("*").unwrap(), Query::All);
        assert_eq!(
            parse("thingName:lamp-1").unwrap(),
            field("thingName", "lamp-1")
        );
        assert_eq!(
            parse("attributes.room:hall*").unwrap(),
            Query::Match {
                field: Some("attributes.room".into()),
                value: Pattern::Wildcard("hall*".into())
            }
        );
        assert_eq!(
            parse(r#"attributes.note:"a b*""#).unwrap(),
            Query::Match {
                field: Some("attributes.note".into()),
                value: Pattern::Exact("a b*".into())
            }
        );
        assert_eq!(
            parse("lamp").unwrap(),
            Query::Match {
                field: None,
                value: Pattern::Exact("lamp".into())
            }
        );
    }

    #[test]
    fn ranges_and_comparisons() {
        let range = |lower: Option<(&str, bool)>, upper: Option<(&str, bool)>| Query::Range {
            field: "attributes.n".into(),
            lower: lower.map(|(v, i)| Bound {
                value: v.into(),
                inclusive: i,
            }),
            upper: upper.map(|(v, i)| Bound {
                value: v.into(),
                inclusive: i,
            }),
        };
        assert_eq!(
            parse("attributes.n:[1 TO 10]").unwrap(),
            range(Some(("1", true)), Some(("10", true)))
        );
        assert_eq!(
            parse("attributes.n:{1 TO *]").unwrap(),
            range(Some(("1", false)), None)
        );
        assert_eq!(
            parse("attributes.n>5").unwrap(),
            range(Some(("5", false)), None)
        );
        assert_eq!(
            parse("attributes.n>=5").unwrap(),
            range(Some(("5", true)), None)
        );
        assert_eq!(
            parse("attributes.n<5").unwrap(),
            range(None, Some(("5", false)))
        );
        assert_eq!(
            parse("attributes.n<=5").unwrap(),
            range(None, Some(("5", true)))
        );
    }

    #[test]
    fn boolean_operators_bind_not_then_and_then_or() {
        let q = parse("a:1 OR b:2 c:3 AND NOT (d:4 OR e:5)").unwrap();
        assert_eq!(
            q,
            Query::Or(vec![
                field("a", "1"),
                Query::And(vec![
                    field("b", "2"),
                    field("c", "3"),
                    Query::Not(Box::new(Query::Or(vec![field("d", "4"), field("e", "5")])))
                ])
            ])
        );
    }

    #[test]
    fn malformed_queries_say_why() {
        for bad in [
            "",
            "   ",
            "(a:1",
            "a:1)",
            "a:",
            ":x",
            "a:[1 TO]",
            "a:[1 TO 2",
            "a:\"open",
            "AND a:1",
            "a:1 OR",
            "NOT",
            "a=1",
            "a]b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&"(".repeat(40)).is_err());
        assert!(parse(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
        assert!(parse(&vec!["a:1"; MAX_TERMS + 1].join(" ")).is_err());
    }

    #[test]
    fn globs_match_by_characters() {
        assert!(glob_matches("h*l", "hall"));
        assert!(glob_matches("h?ll", "hall"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("ü*", "über"));
        assert!(!glob_matches("h?l", "hall"));
        assert!(!glob_matches("a*b", "ac"));
        assert_eq!(Pattern::Wildcard("ab*c".into()).literal_prefix(), "ab");
        assert_eq!(Pattern::Wildcard("ä?".into()).literal_prefix(), "ä");
    }

    proptest! {
        /// Any text: parse returns, never panics.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "\\PC{0,80}") {
            let _ = parse(&text);
        }

        /// Text made of the language's own pieces, often valid, never a panic.
        #[test]
        fn query_shaped_text_never_panics(parts in prop::collection::vec(
            prop::sample::select(vec![
                "a:1", "b:x*", "c:[1 TO 5]", "d:{* TO 3]", "e>2", "f<=1", "AND", "OR", "NOT",
                "(", ")", "\"q u\"", "*", "g:?", ":", "[", "]", "ü:é",
            ]),
            0..20,
        )) {
            let _ = parse(&parts.join(" "));
        }
    }
}
