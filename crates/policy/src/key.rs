//! Names of policy variables (`${name}`) and condition keys, parsed once at
//! compile time so that evaluation resolves them with a `match`, not by
//! comparing strings.

use std::fmt;

use crate::context::CertField;

/// A variable or condition key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// `iot:ClientId`
    ClientId,
    /// `aws:SourceIp`
    SourceIp,
    /// `iot:Connection.Thing.ThingName` (legacy alias `iot:Thing.ThingName`)
    ThingName,
    /// `iot:Connection.Thing.ThingTypeName`
    ThingTypeName,
    /// `iot:Connection.Thing.IsAttached`
    IsAttached,
    /// `iot:Connection.Thing.Attributes[name]`
    ThingAttribute(Box<str>),
    /// `iot:Certificate.Subject.<field>[.N|.List]` and `...Issuer...`
    Certificate {
        part: CertPart,
        field: CertField,
        pick: Pick,
    },
    /// A name this engine doesn't know (or an index that can never exist,
    /// such as `.0`): it is never present in a context.
    Unknown(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertPart {
    Subject,
    Issuer,
}

/// Which value of a multi-valued certificate field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Zero-based; no suffix means the first value, `.N` is `Index(N - 1)`.
    Index(usize),
    /// `.List`: all values joined with commas.
    List,
}

const THING_ATTRIBUTES: &str = "iot:Connection.Thing.Attributes[";
const SUBJECT: &str = "iot:Certificate.Subject.";
const ISSUER: &str = "iot:Certificate.Issuer.";

impl Key {
    /// Parses a name. The fixed parts are matched ignoring ASCII case, as IAM
    /// does for condition keys; attribute names keep their case.
    pub(crate) fn parse(name: &str) -> Key {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("iot:ClientId") {
            Key::ClientId
        } else if is("aws:SourceIp") {
            Key::SourceIp
        } else if is("iot:Connection.Thing.ThingName") || is("iot:Thing.ThingName") {
            Key::ThingName
        } else if is("iot:Connection.Thing.ThingTypeName") {
            Key::ThingTypeName
        } else if is("iot:Connection.Thing.IsAttached") {
            Key::IsAttached
        } else if let Some(rest) = strip_prefix_ignore_case(name, THING_ATTRIBUTES) {
            match rest.strip_suffix(']') {
                Some(attribute) if !attribute.is_empty() && !attribute.contains(']') => {
                    Key::ThingAttribute(attribute.into())
                }
                _ => Key::Unknown(name.into()),
            }
        } else if let Some(rest) = strip_prefix_ignore_case(name, SUBJECT) {
            certificate(CertPart::Subject, rest).unwrap_or_else(|| Key::Unknown(name.into()))
        } else if let Some(rest) = strip_prefix_ignore_case(name, ISSUER) {
            certificate(CertPart::Issuer, rest).unwrap_or_else(|| Key::Unknown(name.into()))
        } else {
            Key::Unknown(name.into())
        }
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// `<field>`, `<field>.N` (N ≥ 1) or `<field>.List`.
fn certificate(part: CertPart, rest: &str) -> Option<Key> {
    let (field, pick) = match rest.split_once('.') {
        None => (rest, Pick::Index(0)),
        Some((field, suffix)) if suffix.eq_ignore_ascii_case("List") => (field, Pick::List),
        Some((field, suffix)) => {
            if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let index: usize = suffix.parse().ok()?;
            (field, Pick::Index(index.checked_sub(1)?))
        }
    };
    let field = CertField::from_name(field)?;
    Some(Key::Certificate { part, field, pick })
}

impl fmt::Display for Key {
    /// The canonical name, as reported in `missingContextValues`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::ClientId => f.write_str("iot:ClientId"),
            Key::SourceIp => f.write_str("aws:SourceIp"),
            Key::ThingName => f.write_str("iot:Connection.Thing.ThingName"),
            Key::ThingTypeName => f.write_str("iot:Connection.Thing.ThingTypeName"),
            Key::IsAttached => f.write_str("iot:Connection.Thing.IsAttached"),
            Key::ThingAttribute(name) => write!(f, "{THING_ATTRIBUTES}{name}]"),
            Key::Certificate { part, field, pick } => {
                let prefix = match part {
                    CertPart::Subject => SUBJECT,
                    CertPart::Issuer => ISSUER,
                };
                match pick {
                    Pick::Index(0) => write!(f, "{prefix}{field}"),
                    Pick::Index(index) => write!(f, "{prefix}{field}.{}", index + 1),
                    Pick::List => write!(f, "{prefix}{field}.List"),
                }
            }
            Key::Unknown(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_names_ignoring_case() {
        assert_eq!(Key::parse("iot:ClientId"), Key::ClientId);
        assert_eq!(Key::parse("IOT:clientid"), Key::ClientId);
        assert_eq!(Key::parse("aws:SourceIp"), Key::SourceIp);
        assert_eq!(Key::parse("iot:Thing.ThingName"), Key::ThingName);
        assert_eq!(
            Key::parse("iot:Connection.Thing.Attributes[Floor]"),
            Key::ThingAttribute("Floor".into())
        );
        assert_eq!(
            Key::parse("iot:Certificate.Subject.CommonName"),
            Key::Certificate {
                part: CertPart::Subject,
                field: CertField::CommonName,
                pick: Pick::Index(0)
            }
        );
        assert_eq!(
            Key::parse("iot:Certificate.Issuer.OrganizationalUnit.3"),
            Key::Certificate {
                part: CertPart::Issuer,
                field: CertField::OrganizationalUnit,
                pick: Pick::Index(2)
            }
        );
        assert_eq!(
            Key::parse("iot:Certificate.Subject.Organization.List"),
            Key::Certificate {
                part: CertPart::Subject,
                field: CertField::Organization,
                pick: Pick::List
            }
        );
    }

    #[test]
    fn impossible_names_are_unknown() {
        for name in [
            "iot:Certificate.Subject.CommonName.0",
            "iot:Certificate.Subject.CommonName.x",
            "iot:Certificate.Subject.CommonName.",
            "iot:Certificate.Subject.Nickname",
            "iot:Connection.Thing.Attributes[]",
            "iot:Connection.Thing.Attributes[a",
            "iot:Something",
            "",
        ] {
            assert_eq!(Key::parse(name), Key::Unknown(name.into()), "{name}");
        }
    }

    #[test]
    fn displays_the_canonical_name() {
        for name in [
            "iot:ClientId",
            "iot:Connection.Thing.ThingName",
            "iot:Connection.Thing.Attributes[Floor]",
            "iot:Certificate.Issuer.CommonName.2",
            "iot:Certificate.Subject.Country.List",
        ] {
            assert_eq!(Key::parse(name).to_string(), name);
        }
        assert_eq!(
            Key::parse("iot:thing.thingname").to_string(),
            "iot:Connection.Thing.ThingName"
        );
    }
}
