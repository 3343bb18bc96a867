//! MQTT topic names and topic filters under AWS IoT Core's rules
//! (AWS IoT Core Developer Guide: "Reserved topics"; MQTT 3.1.1 §4.7).
//!
//! - [`validate_topic_name`] checks the topic of a client PUBLISH,
//!   [`validate_topic_filter`] a filter of a client SUBSCRIBE or UNSUBSCRIBE.
//!   Both apply the AWS limits ([`MAX_TOPIC_BYTES`], [`MAX_TOPIC_SLASHES`]) on
//!   top of MQTT's syntax rules. They are for client input only: topics the
//!   gateway builds itself (event topics with 128-character names) may be
//!   longer than 256 bytes and are never passed through them (AWS IoT Core Developer Guide: "Reserved topics").
//! - [`matches()`] is MQTT matching with `+` and `#`, including the rule that a
//!   filter starting with a wildcard never matches a `$` topic
//!   \[MQTT-4.7.2-1\]; it does not allocate.
//! - [`is_reserved`], [`is_aws_events`] and [`is_aws_things`] classify
//!   topics for the session layer: `$` topics are served by the gateway's
//!   own bus, `$aws/events/...` topics are subscribe-only for clients, and
//!   `$aws/things/...` are the only `$` topics clients may publish on.
//!
//! Herald serves no Basic Ingest (`$aws/rules/{ruleName}/...`), so the
//! slash limit is applied to every topic as written, without the AWS
//! exception for that prefix.

/// The largest topic name or topic filter a client may use, in UTF-8 bytes
/// (AWS IoT quota).
pub const MAX_TOPIC_BYTES: usize = 256;

/// The most `/` separators a client topic name or topic filter may hold, that
/// is at most eight levels (AWS IoT quota).
pub const MAX_TOPIC_SLASHES: usize = 7;

/// The most topic filters one SUBSCRIBE packet may carry (AWS IoT quota).
pub const MAX_FILTERS_PER_SUBSCRIBE: usize = 8;

/// The prefix of every topic that is reserved for the service.
pub const RESERVED_PREFIX: &str = "$";

/// The prefix of every AWS IoT event topic; clients may subscribe to these
/// topics but never publish on them.
pub const AWS_EVENTS_PREFIX: &str = "$aws/events/";

/// The prefix of the per-thing topics (`$aws/things/{thingName}/shadow/...`,
/// `.../jobs/...`) that clients may publish on.
pub const AWS_THINGS_PREFIX: &str = "$aws/things/";

/// Why a topic name or topic filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic or filter is the empty string, which MQTT forbids.
    #[error("the topic is empty")]
    Empty,
    /// More than [`MAX_TOPIC_BYTES`] bytes.
    #[error("the topic is {len} bytes long; the limit is {MAX_TOPIC_BYTES}")]
    TooLong {
        /// The length in bytes.
        len: usize,
    },
    /// More than [`MAX_TOPIC_SLASHES`] slashes.
    #[error("the topic has {slashes} slashes; the limit is {MAX_TOPIC_SLASHES}")]
    TooManySlashes {
        /// The number of `/` characters.
        slashes: usize,
    },
    /// The topic holds U+0000, which MQTT forbids in any UTF-8 string.
    #[error("the topic contains a NUL character")]
    Nul,
    /// The topic holds a control character or a non-character, which Herald
    /// refuses in every MQTT string (see [`validate_mqtt_string`]).
    #[error("the topic contains the forbidden character U+{0:04X}")]
    ForbiddenCharacter(u32),
    /// A topic name (not a filter) holds `+` or `#`: publishers can't use
    /// wildcards.
    #[error("a topic name cannot contain the wildcards + or #")]
    WildcardInName,
    /// In a filter, `#` is not alone in the last level.
    #[error("# must be the last level of a topic filter and alone in it")]
    MisplacedMultiLevelWildcard,
    /// In a filter, `+` shares its level with other characters.
    #[error("+ must be alone in its level of a topic filter")]
    MisplacedSingleLevelWildcard,
}

/// Checks a UTF-8 string of an MQTT packet (client id, username, topic
/// names and filters, will topic, MQTT 5 property strings): the first
/// character it refuses, if any.
///
/// Well-formedness (no surrogates, no overlong encodings) is already
/// guaranteed by `&str`. MQTT forbids U+0000 (3.1.1 §1.5.3, MQTT 5
/// §1.5.4); the control characters U+0001–U+001F and U+007F–U+009F and the
/// Unicode non-characters are "SHOULD NOT" there, and a receiver may treat
/// them as a malformed packet. Herald refuses them all: libmosquitto (and
/// with it many watchers) rejects any packet holding one of them, so a
/// client id or topic with such a character would end up in lifecycle
/// topics and payloads its watchers cannot read.
pub fn validate_mqtt_string(s: &str) -> Result<(), char> {
    match s.chars().find(|&c| is_forbidden_char(c)) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// U+0000, a control character, or a Unicode non-character (U+FDD0–U+FDEF
/// and the last two code points of every plane).
fn is_forbidden_char(c: char) -> bool {
    let code = u32::from(c);
    c.is_control() || (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// Checks the size, slash and NUL rules shared by names and filters.
fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong { len: s.len() });
    }
    let bytes = s.as_bytes();
    if let Err(c) = validate_mqtt_string(s) {
        return Err(if c == '\0' {
            TopicError::Nul
        } else {
            TopicError::ForbiddenCharacter(u32::from(c))
        });
    }
    let slashes = bytes.iter().filter(|&&b| b == b'/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(TopicError::TooManySlashes { slashes });
    }
    Ok(())
}

/// Checks the topic of a client PUBLISH: not empty, no wildcards, no NUL, at
/// most [`MAX_TOPIC_BYTES`] bytes and [`MAX_TOPIC_SLASHES`] slashes.
///
/// Whether the client may publish on a `$` topic at all is a separate
/// question (see [`is_aws_events`]); this only checks the syntax.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter of a client SUBSCRIBE or UNSUBSCRIBE: the rules of
/// [`validate_topic_name`] except that `+` may fill a whole level and `#` may
/// fill the whole last level.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Whether the topic filter `filter` matches the topic name `topic`.
///
/// `+` matches exactly one level (which may be empty), `#` matches the rest
/// of the topic including nothing at all, so `a/#` matches `a`. A filter
/// that starts with `+` or `#` never matches a topic starting with `$`
/// \[MQTT-4.7.2-1\]: a client must name `$aws/events/...` explicitly. Matching
/// is case-sensitive and allocation-free.
///
/// `filter` is expected to be valid (see [`validate_topic_filter`]); for an
/// invalid one the answer is unspecified but the call never panics.
pub fn matches(filter: &str, topic: &str) -> bool {
    // The common case of every delivery on an exact filter; what the level
    // by level comparison below also answers.
    if filter == topic {
        return true;
    }
    if is_reserved(topic) && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `topic` (a name or a filter) is reserved for the service, that is
/// starts with `$`. The gateway serves these from its own bus.
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with(RESERVED_PREFIX)
}

/// Whether `topic` (a name) lies under `$aws/things/`, the shadow and
/// jobs-style topics clients may publish on (with `iot:Publish`, never
/// retained); the gateway carries them on its bus.
pub fn is_aws_things(topic: &str) -> bool {
    topic.starts_with(AWS_THINGS_PREFIX)
}

/// `$aws/things/{thing}/{service}/{rest}` as (thing, rest), for a non-empty
/// thing name: a device's request to a thing service (`shadow`, `jobs`).
pub fn thing_service<'a>(topic: &'a str, service: &str) -> Option<(&'a str, &'a str)> {
    let (thing, rest) = topic.strip_prefix(AWS_THINGS_PREFIX)?.split_once('/')?;
    let rest = rest.strip_prefix(service)?.strip_prefix('/')?;
    (!thing.is_empty()).then_some((thing, rest))
}

/// Whether `topic` (a name or a filter) lies under `$aws/events/`, the
/// subscribe-only event topics that clients must never publish on. The bare
/// `$aws/events` counts too, so that no client publish can reach a
/// `$aws/#` subscriber disguised as an event.
pub fn is_aws_events(topic: &str) -> bool {
    topic
        .strip_prefix("$aws/events")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_strings() {
        for good in [
            "",
            "a",
            "ünïcödé/日本",
            " ",
            "\u{a0}",
            "\u{fffd}",
            "\u{10000}",
            "\u{fdcf}",
        ] {
            assert_eq!(validate_mqtt_string(good), Ok(()), "{good:?}");
        }
        for (bad, c) in [
            ("\0", '\0'),
            ("evil\0id", '\0'),
            ("a\u{1}", '\u{1}'),
            ("\n", '\n'),
            ("\u{1f}", '\u{1f}'),
            ("\u{7f}", '\u{7f}'),
            ("x\u{80}", '\u{80}'),
            ("\u{9f}", '\u{9f}'),
            ("\u{fdd0}", '\u{fdd0}'),
            ("\u{fdef}", '\u{fdef}'),
            ("\u{ffff}", '\u{ffff}'),
            ("\u{1fffe}", '\u{1fffe}'),
            ("\u{10ffff}", '\u{10ffff}'),
        ] {
            assert_eq!(validate_mqtt_string(bad), Err(c), "{bad:?}");
        }
    }

    /// `n` levels of `x`, joined by `/`: `n - 1` slashes.
    fn levels(n: usize) -> String {
        vec!["x"; n].join("/")
    }

    #[test]
    fn topic_names() {
        let good = [
            "a",
            "a/b/c",
            "/",
            "a//b",
            "/leading",
            "trailing/",
            "$aws/events/presence/connected/c1",
            "$aws/things/t1/shadow/update",
            "sport/tennis/player1",
            "UTF-8/ünïcödé/日本",
            " ",
            "a b/c",
        ];
        for t in good {
            assert_eq!(validate_topic_name(t), Ok(()), "{t:?}");
        }
        let bad = [
            ("", TopicError::Empty),
            ("a/+", TopicError::WildcardInName),
            ("a/#", TopicError::WildcardInName),
            ("+", TopicError::WildcardInName),
            ("#", TopicError::WildcardInName),
            ("a+b", TopicError::WildcardInName),
            ("a#b", TopicError::WildcardInName),
            ("a\0b", TopicError::Nul),
        ];
        for (t, e) in bad {
            assert_eq!(validate_topic_name(t), Err(e), "{t:?}");
        }
    }

    #[test]
    fn topic_filters() {
        let good = [
            "a",
            "#",
            "+",
            "+/+",
            "/+",
            "+/",
            "a/#",
            "a/+/c",
            "+/events/#",
            "$aws/events/#",
            "$aws/events/thing/+/created",
            "$aws/events/presence/+/+",
            "a//#",
            "/",
        ];
        for f in good {
            assert_eq!(validate_topic_filter(f), Ok(()), "{f:?}");
        }
        let bad = [
            ("", TopicError::Empty),
            ("a/#/b", TopicError::MisplacedMultiLevelWildcard),
            ("#/a", TopicError::MisplacedMultiLevelWildcard),
            ("a#", TopicError::MisplacedMultiLevelWildcard),
            ("a/b#", TopicError::MisplacedMultiLevelWildcard),
            ("##", TopicError::MisplacedMultiLevelWildcard),
            ("#/", TopicError::MisplacedMultiLevelWildcard),
            ("a+", TopicError::MisplacedSingleLevelWildcard),
            ("a/+b/c", TopicError::MisplacedSingleLevelWildcard),
            ("++", TopicError::MisplacedSingleLevelWildcard),
            ("a/b+", TopicError::MisplacedSingleLevelWildcard),
            ("a/\0", TopicError::Nul),
            ("a/\u{1}", TopicError::ForbiddenCharacter(1)),
            ("a/\u{9f}", TopicError::ForbiddenCharacter(0x9f)),
            ("a/\u{fffe}", TopicError::ForbiddenCharacter(0xfffe)),
        ];
        for (f, e) in bad {
            assert_eq!(validate_topic_filter(f), Err(e), "{f:?}");
        }
    }

    #[test]
    fn slash_limit_at_the_edge() {
        let seven = levels(8);
        assert_eq!(seven.matches('/').count(), 7);
        assert_eq!(validate_topic_name(&seven), Ok(()));
        assert_eq!(validate_topic_filter(&seven), Ok(()));
        let eight = levels(9);
        let refused = Err(TopicError::TooManySlashes { slashes: 8 });
        assert_eq!(validate_topic_name(&eight), refused);
        assert_eq!(validate_topic_filter(&eight), refused);
        // Empty levels count too.
        assert_eq!(validate_topic_name("////////"), refused);
        assert_eq!(validate_topic_filter("+/+/+/+/+/+/+/#"), Ok(()));
        assert_eq!(validate_topic_filter("+/+/+/+/+/+/+/+/#"), refused);
        // The deepest event topics have exactly seven slashes: legal filters.
        let deepest = "$aws/events/thingGroupMembership/thingGroup/g/thing/t/added";
        assert_eq!(validate_topic_filter(deepest), Ok(()));
    }

    #[test]
    fn size_limit_at_the_edge() {
        let ok = "a".repeat(MAX_TOPIC_BYTES);
        assert_eq!(validate_topic_name(&ok), Ok(()));
        assert_eq!(validate_topic_filter(&ok), Ok(()));
        let long = "a".repeat(MAX_TOPIC_BYTES + 1);
        let refused = Err(TopicError::TooLong { len: 257 });
        assert_eq!(validate_topic_name(&long), refused);
        assert_eq!(validate_topic_filter(&long), refused);
        // The limit is in bytes, not characters: 128 two-byte characters fit,
        // and one more byte does not.
        let two_byte = "é".repeat(128);
        assert_eq!(two_byte.len(), 256);
        assert_eq!(validate_topic_name(&two_byte), Ok(()));
        let over = format!("{two_byte}a");
        assert_eq!(validate_topic_name(&over), refused);
        let filter = format!("{}/#", "a".repeat(254));
        assert_eq!(validate_topic_filter(&filter), Ok(()));
        let filter = format!("{}/#", "a".repeat(255));
        assert_eq!(validate_topic_filter(&filter), refused);
    }

    #[test]
    fn matching() {
        let table = [
            // (filter, topic, matches)
            (
                "$aws/events/thing/+/created",
                "$aws/events/thing/t1/created",
                true,
            ),
            (
                "$aws/events/thing/+/created",
                "$aws/events/thing/t1/deleted",
                false,
            ),
            (
                "$aws/events/thing/+/created",
                "$aws/events/thing/created",
                false,
            ),
            ("#", "$aws/events/x", false),
            ("+/events/#", "$aws/events/x", false),
            ("+/#", "$aws/events/x", false),
            ("+", "$aws", false),
            ("#", "$", false),
            ("$aws/#", "$aws/events/x", true),
            ("$aws/#", "$aws", true),
            ("$aws/events/#", "$aws/events/presence/connected/c1", true),
            (
                "$aws/events/presence/+/c1",
                "$aws/events/presence/connected/c1",
                true,
            ),
            (
                "$aws/events/presence/connected/c1",
                "$aws/events/presence/connected/c1",
                true,
            ),
            (
                "$aws/events/presence/connected/c1",
                "$aws/events/presence/connected/c2",
                false,
            ),
            ("$aws/+/x", "$aws/events/x", true),
            ("$AWS/#", "$aws/events/x", false),
            ("a/#", "a", true),
            ("a/#", "a/", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("+", "/", false),
            ("+/+", "/", true),
            ("/+", "/", true),
            ("+", "a", true),
            ("+", "", true),
            ("#", "a/b/c", true),
            ("#", "/", true),
            ("+/+/+", "a/b/c", true),
            ("+/b/#", "a/b", true),
            ("+/b/#", "a/c", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/", false),
            ("a/b/", "a/b", false),
            ("a/b", "A/b", false),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/+", "sport", false),
            ("sport/#", "sport", true),
        ];
        for (filter, topic, expected) in table {
            assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn matching_invalid_filters_does_not_panic() {
        for f in ["", "a/#/b", "a#", "a+", "##"] {
            let _ = matches(f, "a/b");
            let _ = matches(f, "");
        }
    }

    #[test]
    fn classification() {
        assert!(is_reserved("$aws/events/x"));
        assert!(is_reserved("$SYS/x"));
        assert!(is_reserved("$"));
        assert!(!is_reserved("aws/$x"));
        assert!(!is_reserved(""));
        assert!(is_aws_events("$aws/events/presence/connected/c"));
        assert!(is_aws_events("$aws/events/#"));
        assert!(is_aws_events("$aws/events/"));
        assert!(is_aws_events("$aws/events"));
        assert!(!is_aws_events("$aws/eventsx/y"));
        assert!(!is_aws_events("$aws/things/t/shadow/update"));
        assert!(!is_aws_events("aws/events/x"));
        assert!(is_aws_things("$aws/things/lamp/shadow/update"));
        assert!(!is_aws_things("$aws/things"));
        assert!(!is_aws_things("$aws/thingsx/y"));
        assert!(!is_aws_things("aws/things/lamp"));
        assert!(!is_aws_things("$aws/events/thing/t/created"));
    }
}
