//! `Condition` blocks: `{"<operator>": {"<key>": <value or values>}}`.
//!
//! Semantics follow IAM: operators AND together, keys within an operator AND
//! together, the values of one key are any-of. The negated operators
//! (`StringNotEquals`, `NotIpAddress`, ...) hold when the key matches none of
//! the values. A key missing from the context makes a condition false,
//! except that a negated operator is then true (IAM: "If the policy condition
//! requires that the key is *not* matched ... and the right key is not
//! present, the condition is true"), an `...IfExists` operator is true, and
//! `Null` tests exactly that.

use std::net::IpAddr;

use crate::{
    context::Context,
    error::{PolicyError, malformed},
    glob::{Pattern, Syntax},
    key::Key,
};

/// One operator applied to one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    key: Key,
    test: Test,
    negated: bool,
    if_exists: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// `String*` and `Arn*`: the key's value matches one of the patterns.
    String {
        values: Box<[Pattern]>,
        fold_case: bool,
    },
    /// `Bool`: the key's value is one of these.
    Bool(Box<[bool]>),
    /// `IpAddress`: the key's value is in one of these blocks.
    Ip(Box<[Cidr]>),
    /// `Numeric*`: the key's value compares so with one of these.
    Numeric {
        compare: Compare,
        values: Box<[f64]>,
    },
    /// `Null`: `true` means the key must be absent, `false` present.
    Null(Box<[bool]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String { wildcards: bool, fold_case: bool },
    Bool,
    Ip,
    Numeric(Compare),
    Null,
}

/// The supported operators (without the `IfExists` suffix): kind, negated.
fn operator(name: &str) -> Option<(Kind, bool)> {
    let exact = Kind::String {
        wildcards: false,
        fold_case: false,
    };
    let fold = Kind::String {
        wildcards: false,
        fold_case: true,
    };
    let like = Kind::String {
        wildcards: true,
        fold_case: false,
    };
    Some(match name {
        "StringEquals" => (exact, false),
        "StringNotEquals" => (exact, true),
        "StringEqualsIgnoreCase" => (fold, false),
        "StringNotEqualsIgnoreCase" => (fold, true),
        "StringLike" => (like, false),
        "StringNotLike" => (like, true),
        // IAM's ArnEquals is a glob match too, like ArnLike.
        "ArnEquals" | "ArnLike" => (like, false),
        "ArnNotEquals" | "ArnNotLike" => (like, true),
        "Bool" => (Kind::Bool, false),
        "IpAddress" => (Kind::Ip, false),
        "NotIpAddress" => (Kind::Ip, true),
        "NumericEquals" => (Kind::Numeric(Compare::Equal), false),
        "NumericNotEquals" => (Kind::Numeric(Compare::Equal), true),
        "NumericLessThan" => (Kind::Numeric(Compare::Less), false),
        "NumericLessThanEquals" => (Kind::Numeric(Compare::LessOrEqual), false),
        "NumericGreaterThan" => (Kind::Numeric(Compare::Greater), false),
        "NumericGreaterThanEquals" => (Kind::Numeric(Compare::GreaterOrEqual), false),
        "Null" => (Kind::Null, false),
        _ => return None,
    })
}

impl Condition {
    /// Compiles `operator: {key: values}`; `at` names the place for errors
    /// (`Statement[0].Condition`), `variables` whether `${...}` is a
    /// variable in string values (policy version 2012-10-17).
    pub(crate) fn compile(
        operator_name: &str,
        key: &str,
        values: &[String],
        variables: bool,
        at: &str,
    ) -> Result<Condition, PolicyError> {
        let unsupported = || {
            malformed(format!(
                "{at}: unsupported condition operator {operator_name:?}"
            ))
        };
        let (base, if_exists) = match operator_name.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (operator_name, false),
        };
        let (kind, negated) = operator(base).ok_or_else(unsupported)?;
        if if_exists && kind == Kind::Null {
            return Err(unsupported());
        }
        let at = format!("{at}.{operator_name}[{key:?}]");
        if key.is_empty() {
            return Err(malformed(format!("{at}: the condition key is empty")));
        }
        if values.is_empty() {
            return Err(malformed(format!("{at}: no values")));
        }
        let test = match kind {
            Kind::String {
                wildcards,
                fold_case,
            } => Test::String {
                values: values
                    .iter()
                    .map(|value| {
                        Pattern::compile(
                            value,
                            Syntax {
                                variables,
                                wildcards,
                            },
                        )
                    })
                    .collect(),
                fold_case,
            },
            Kind::Bool => Test::Bool(parse_all(values, &at, parse_bool, "a boolean")?),
            Kind::Null => Test::Null(parse_all(values, &at, parse_bool, "a boolean")?),
            Kind::Ip => Test::Ip(parse_all(
                values,
                &at,
                Cidr::parse,
                "an IP address or CIDR block",
            )?),
            Kind::Numeric(compare) => Test::Numeric {
                compare,
                values: parse_all(values, &at, parse_number, "a number")?,
            },
        };
        Ok(Condition {
            key: Key::parse(key),
            test,
            negated,
            if_exists,
        })
    }

    /// The condition key.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// The variables used in the condition's values.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &Key> {
        let patterns: &[Pattern] = match &self.test {
            Test::String { values, .. } => values,
            _ => &[],
        };
        patterns.iter().flat_map(Pattern::variables)
    }

    /// Whether the condition holds for `context`. Doesn't allocate.
    pub(crate) fn holds(&self, context: &Context) -> bool {
        let value = context.resolve(&self.key);
        if let Test::Null(values) = &self.test {
            return values.contains(&value.is_none());
        }
        let Some(value) = value else {
            return self.if_exists || self.negated;
        };
        let matched = match &self.test {
            Test::String { values, fold_case } => values
                .iter()
                .any(|pattern| pattern.matches(value, Some(context), *fold_case)),
            Test::Bool(values) => parse_bool(value).is_some_and(|value| values.contains(&value)),
            Test::Ip(blocks) => {
                let ip = match self.key {
                    Key::SourceIp => context.source_ip(),
                    _ => value.parse().ok(),
                };
                ip.is_some_and(|ip| blocks.iter().any(|block| block.contains(ip)))
            }
            Test::Numeric { compare, values } => parse_number(value)
                .is_some_and(|number| values.iter().any(|value| compare.holds(number, *value))),
            Test::Null(_) => unreachable!("handled above"),
        };
        matched != self.negated
    }
}

fn parse_all<T>(
    values: &[String],
    at: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Box<[T]>, PolicyError> {
    values
        .iter()
        .map(|value| {
            parse(value).ok_or_else(|| malformed(format!("{at}: {value:?} is not {what}")))
        })
        .collect()
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_number(value: &str) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|number| number.is_finite())
}

impl Compare {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Compare::Equal => left == right,
            Compare::Less => left < right,
            Compare::LessOrEqual => left <= right,
            Compare::Greater => left > right,
            Compare::GreaterOrEqual => left >= right,
        }
    }
}

/// An address block: `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => bits,
            Some(prefix) if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) => {
                prefix.parse().ok().filter(|prefix| *prefix <= bits)?
            }
            Some(_) => return None,
        };
        Some(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(operator: &str, key: &str, values: &[&str]) -> Condition {
        let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
        Condition::compile(operator, key, &values, true, "Statement[0].Condition").unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let block = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(block.contains("203.0.113.9".parse().unwrap()));
        assert!(!block.contains("203.0.114.9".parse().unwrap()));
        assert!(block.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!block.contains("2001:db8::1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("10.1.2.3".parse().unwrap()));
        let one = Cidr::parse("10.0.0.1").unwrap();
        assert!(one.contains("10.0.0.1".parse().unwrap()));
        assert!(!one.contains("10.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+1",
            "10.0.0",
            "x",
            "::/129",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_keys() {
        let empty = Context::new();
        assert!(!condition("StringEquals", "iot:ClientId", &["a"]).holds(&empty));
        assert!(condition("StringNotEquals", "iot:ClientId", &["a"]).holds(&empty));
        assert!(condition("StringEqualsIfExists", "iot:ClientId", &["a"]).holds(&empty));
        assert!(condition("Null", "iot:ClientId", &["true"]).holds(&empty));
        assert!(!condition("Null", "iot:ClientId", &["false"]).holds(&empty));
        let present = Context::new().with_client_id("b");
        assert!(!condition("StringEqualsIfExists", "iot:ClientId", &["a"]).holds(&present));
        assert!(condition("Null", "iot:ClientId", &["false"]).holds(&present));
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let context = Context::new().with_thing_attribute("floor", "10");
        let key = "iot:Connection.Thing.Attributes[floor]";
        assert!(condition("NumericLessThan", key, &["9", "11"]).holds(&context));
        assert!(!condition("NumericLessThan", key, &["9"]).holds(&context));
        assert!(condition("NumericEquals", key, &["10.0"]).holds(&context));
        assert!(!condition("NumericNotEquals", key, &["10.0"]).holds(&context));
        assert!(condition("NumericGreaterThanEquals", key, &["10"]).holds(&context));
        let text = Context::new().with_thing_attribute("floor", "ten");
        assert!(!condition("NumericEquals", key, &["10"]).holds(&text));
    }

    #[test]
    fn rejects_bad_operators_and_values() {
        let compile = |operator: &str, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
            Condition::compile(operator, "k", &values, true, "C")
                .unwrap_err()
                .to_string()
        };
        assert!(
            compile("DateLessThan", &["1"])
                .contains("unsupported condition operator \"DateLessThan\"")
        );
        assert!(compile("ForAnyValue:StringLike", &["1"]).contains("\"ForAnyValue:StringLike\""));
        assert!(compile("NullIfExists", &["true"]).contains("\"NullIfExists\""));
        assert!(compile("Bool", &["yes"]).contains("\"yes\" is not a boolean"));
        assert!(compile("NumericEquals", &["1x"]).contains("is not a number"));
        assert!(compile("IpAddress", &["10.0.0.0/40"]).contains("is not an IP address"));
        assert!(compile("StringEquals", &[]).contains("no values"));
    }
}
