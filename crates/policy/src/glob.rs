//! Compiled glob patterns with variable slots, and their matcher.
//!
//! A pattern is compiled once into tokens: literal runs, variable slots,
//! `*` (any sequence, crossing `/`) and `?` (one character). Matching walks
//! the tokens against the text with the standard two-pointer wildcard
//! algorithm, generalised from characters to tokens: remember the last `*`
//! and, on a mismatch, retry the tokens after it one character further on.
//! That needs no recursion and no allocation, and does at most
//! O(text length × tokens) work whatever the input. A variable is resolved
//! to a `&str` borrowed from the [`Context`] and compared in place, so no
//! substituted copy of the pattern is ever built.

use crate::{context::Context, key::Key};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// Text that must appear as is.
    Literal(Box<str>),
    /// A policy variable: its value must appear as is.
    Variable(Key),
    /// `*`: any sequence of characters, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    tokens: Box<[Token]>,
}

/// How the source text of a pattern is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// `${...}` is a variable (policy version 2012-10-17), or else literal.
    pub(crate) variables: bool,
    /// `*` and `?` are wildcards (`StringLike`, resources), or else literal
    /// (`StringEquals`).
    pub(crate) wildcards: bool,
}

impl Pattern {
    pub(crate) fn compile(source: &str, syntax: Syntax) -> Pattern {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if syntax.variables
                && rest.starts_with("${")
                && let Some(end) = rest.find('}')
            {
                let name = &rest[2..end];
                rest = &rest[end + 1..];
                match name {
                    // The escapes for characters that are otherwise special.
                    "*" | "?" | "$" => literal.push_str(name),
                    _ => {
                        flush(&mut literal, &mut tokens);
                        tokens.push(Token::Variable(Key::parse(name)));
                    }
                }
                continue;
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' if syntax.wildcards => {
                    flush(&mut literal, &mut tokens);
                    // `**` means the same as `*`; one token keeps matching linear.
                    if tokens.last() != Some(&Token::Any) {
                        tokens.push(Token::Any);
                    }
                }
                '?' if syntax.wildcards => {
                    flush(&mut literal, &mut tokens);
                    tokens.push(Token::One);
                }
                _ => literal.push(c),
            }
        }
        flush(&mut literal, &mut tokens);
        Pattern {
            tokens: tokens.into_boxed_slice(),
        }
    }

    /// The variables the pattern refers to.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &Key> {
        self.tokens.iter().filter_map(|token| match token {
            Token::Variable(key) => Some(key),
            _ => None,
        })
    }

    /// Whether the whole of `text` matches. `fold_case` compares ASCII
    /// letters ignoring case. A variable that `context` can't resolve (or any
    /// variable when there is no context) matches nothing.
    pub(crate) fn matches(&self, text: &str, context: Option<&Context>, fold_case: bool) -> bool {
        let tokens = &*self.tokens;
        let text = text.as_bytes();
        let (mut p, mut t) = (0, 0);
        // The token after the last `*` seen, and where in the text it is being tried.
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(token) = tokens.get(p) {
                let step = match token {
                    Token::Any => {
                        if p + 1 == tokens.len() {
                            // A trailing `*` takes whatever is left.
                            return true;
                        }
                        star = Some((p + 1, t));
                        p += 1;
                        continue;
                    }
                    Token::One => (t < text.len()).then(|| char_len(text[t])),
                    Token::Literal(literal) => {
                        prefix_len(&text[t..], literal.as_bytes(), fold_case)
                    }
                    Token::Variable(key) => {
                        match context.and_then(|context| context.resolve(key)) {
                            Some(value) => prefix_len(&text[t..], value.as_bytes(), fold_case),
                            None => return false,
                        }
                    }
                };
                if let Some(step) = step {
                    p += 1;
                    t += step;
                    continue;
                }
            } else if t == text.len() {
                return true;
            }
            // A mismatch: let the last `*` take one more character, or fail.
            match star {
                Some((after, from)) if from < text.len() => {
                    let from = from + char_len(text[from]);
                    star = Some((after, from));
                    p = after;
                    t = from;
                }
                _ => return false,
            }
        }
    }
}

fn flush(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal).into_boxed_str()));
    }
}

/// `Some(prefix.len())` if `text` starts with `prefix`.
fn prefix_len(text: &[u8], prefix: &[u8], fold_case: bool) -> Option<usize> {
    let head = text.get(..prefix.len())?;
    let equal = if fold_case {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    equal.then_some(prefix.len())
}

/// The length of the UTF-8 sequence that starts with `lead`. The matcher only
/// ever stands on character boundaries: it advances by whole literals, whole
/// characters or whole variable values.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GLOB: Syntax = Syntax {
        variables: true,
        wildcards: true,
    };

    fn glob(pattern: &str, text: &str) -> bool {
        Pattern::compile(pattern, GLOB).matches(text, None, false)
    }

    /// The obviously correct exponential matcher, over characters.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    #[test]
    fn compiles_tokens_and_escapes() {
        let pattern = Pattern::compile("a${*}b${?}${$}c**?${iot:ClientId}$x${", GLOB);
        assert_eq!(
            &*pattern.tokens,
            &[
                Token::Literal("a*b?$c".into()),
                Token::Any,
                Token::One,
                Token::Variable(Key::ClientId),
                Token::Literal("$x${".into()),
            ]
        );
        let literal = Pattern::compile(
            "a*${iot:ClientId}",
            Syntax {
                variables: false,
                wildcards: false,
            },
        );
        assert_eq!(
            &*literal.tokens,
            &[Token::Literal("a*${iot:ClientId}".into())]
        );
    }

    #[test]
    fn matches_like_iam_globs() {
        assert!(glob("*", ""));
        assert!(glob("*", "anything/at/all"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
        assert!(glob("topic/a/*", "topic/a/b/c"));
        assert!(glob("topic/a/*", "topic/a/"));
        assert!(!glob("topic/a/*", "topic/a"));
        assert!(glob("a/?/c", "a/b/c"));
        assert!(!glob("a/?/c", "a/bb/c"));
        assert!(glob("a/?/c", "a/é/c"));
        assert!(glob("*b*b*", "abxbb"));
        assert!(!glob("*b*b*", "abx"));
        assert!(glob("a*a*a", "aaaaa"));
        assert!(!glob("a*a*a", "aa"));
        assert!(glob("a/#", "a/#"));
        assert!(glob("a/*", "a/#"));
        assert!(!glob("a/+", "a/b"));
        assert!(glob("topic/$aws/*", "topic/$aws/events/x"));
        assert!(glob("*é", "ééé"));
    }

    #[test]
    fn folds_ascii_case_on_request() {
        let pattern = Pattern::compile("iot:pub*", GLOB);
        assert!(pattern.matches("IoT:Publish", None, true));
        assert!(!pattern.matches("IoT:Publish", None, false));
    }

    #[test]
    fn variables_need_a_context() {
        let pattern = Pattern::compile("client/${iot:ClientId}", GLOB);
        assert!(!pattern.matches("client/c1", None, false));
        let context = Context::new().with_client_id("c1");
        assert!(pattern.matches("client/c1", Some(&context), false));
        assert!(!pattern.matches("client/c2", Some(&context), false));
        let star = Context::new().with_client_id("*");
        assert!(
            !pattern.matches("client/c2", Some(&star), false),
            "a variable's value is literal"
        );
        assert!(pattern.matches("client/*", Some(&star), false));
    }

    #[test]
    fn work_is_bounded_on_pathological_input() {
        let pattern = format!("{}b", "*a".repeat(50));
        let text = "a".repeat(5000);
        assert!(!glob(&pattern, &text));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(
            pattern in "[ab*?/é]{0,12}",
            text in "[ab/é]{0,16}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob(&pattern, &text), reference(&p, &t));
        }
    }
}
