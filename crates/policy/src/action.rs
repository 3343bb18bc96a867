//! Actions: what a request wants to do, and a statement's `Action` /
//! `NotAction` globs over action names.

use std::fmt;

use crate::glob::{Pattern, Syntax};

/// The action a request is authorised for.
///
/// The MQTT actions are variants so that matching them is a bit test; any
/// other action (`iot:GetThingShadow`, ...) is given by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action<'a> {
    /// `iot:Connect`, on `client/<clientId>`.
    Connect,
    /// `iot:Publish`, on `topic/<topic>`.
    Publish,
    /// `iot:Subscribe`, on `topicfilter/<filter>`.
    Subscribe,
    /// `iot:Receive`, on `topic/<topic>`.
    Receive,
    /// `iot:RetainPublish`, on `topic/<topic>`.
    RetainPublish,
    /// Any other action, by its full name (`iot:GetThingShadow`).
    Other(&'a str),
}

/// The variants with a bit each, in bit order.
const KNOWN: [Action<'static>; 5] = [
    Action::Connect,
    Action::Publish,
    Action::Subscribe,
    Action::Receive,
    Action::RetainPublish,
];

impl<'a> Action<'a> {
    /// The action with this name: a known one, ignoring ASCII case, as the
    /// variant; anything else as [`Action::Other`].
    pub fn from_name(name: &'a str) -> Action<'a> {
        KNOWN
            .into_iter()
            .find(|known| known.name().eq_ignore_ascii_case(name))
            .unwrap_or(Action::Other(name))
    }

    /// The full name, e.g. `iot:Publish`.
    pub fn name(&self) -> &'a str {
        match *self {
            Action::Connect => "iot:Connect",
            Action::Publish => "iot:Publish",
            Action::Subscribe => "iot:Subscribe",
            Action::Receive => "iot:Receive",
            Action::RetainPublish => "iot:RetainPublish",
            Action::Other(name) => name,
        }
    }

    fn bit(&self) -> Option<u8> {
        let index = KNOWN.iter().position(|known| known == self)?;
        Some(1 << index)
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A statement's `Action` or `NotAction`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionSet {
    /// The known actions the statement applies to (already negated for
    /// `NotAction`): computed once from the globs.
    known: u8,
    patterns: Box<[Pattern]>,
    negated: bool,
}

/// Action globs: `*` and `?` are wildcards and there are no variables.
const ACTION_SYNTAX: Syntax = Syntax {
    variables: false,
    wildcards: true,
};

impl ActionSet {
    pub(crate) fn compile<'s>(
        sources: impl IntoIterator<Item = &'s str>,
        negated: bool,
    ) -> ActionSet {
        let patterns: Box<[Pattern]> = sources
            .into_iter()
            .map(|source| Pattern::compile(source, ACTION_SYNTAX))
            .collect();
        let mut set = ActionSet {
            known: 0,
            patterns,
            negated,
        };
        for action in KNOWN {
            if set.matches_by_name(action.name()) {
                set.known |= action.bit().unwrap_or(0);
            }
        }
        set
    }

    /// Whether the statement applies to `action`. Names compare ignoring
    /// ASCII case, as IAM action names do.
    pub(crate) fn matches(&self, action: Action<'_>) -> bool {
        match action.bit() {
            Some(bit) => self.known & bit != 0,
            None => self.matches_by_name(action.name()),
        }
    }

    fn matches_by_name(&self, name: &str) -> bool {
        let listed = self
            .patterns
            .iter()
            .any(|pattern| pattern.matches(name, None, true));
        listed != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_actions_and_others_agree() {
        let set = ActionSet::compile(["iot:Pub*", "IOT:receive"], false);
        assert!(set.matches(Action::Publish));
        assert!(set.matches(Action::Receive));
        assert!(!set.matches(Action::RetainPublish));
        assert!(!set.matches(Action::Connect));
        assert!(set.matches(Action::Other("iot:Publish")));
        assert!(set.matches(Action::Other("iot:PublishAnything")));
        assert!(!set.matches(Action::Other("iot:GetThingShadow")));

        let not = ActionSet::compile(["iot:Connect"], true);
        assert!(!not.matches(Action::Connect));
        assert!(not.matches(Action::Publish));
        assert!(not.matches(Action::Other("iot:GetThingShadow")));
        assert!(!not.matches(Action::Other("IOT:CONNECT")));
    }

    #[test]
    fn star_matches_everything() {
        let set = ActionSet::compile(["*"], false);
        for action in KNOWN {
            assert!(set.matches(action));
        }
        assert!(set.matches(Action::Other("greengrass:Discover")));
    }

    #[test]
    fn names_round_trip() {
        for action in KNOWN {
            assert_eq!(Action::from_name(action.name()), action);
        }
        assert_eq!(Action::from_name("iot:publish"), Action::Publish);
        assert_eq!(
            Action::from_name("iot:GetThingShadow"),
            Action::Other("iot:GetThingShadow")
        );
    }
}
