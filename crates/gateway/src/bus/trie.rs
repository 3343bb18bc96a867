//! The bus's index of wildcard filters: a tree of topic levels, so that a
//! publish visits only the filters that can match it (the levels of its
//! topic, `+` and `#` at each), however many devices subscribe with
//! wildcards of their own (`$aws/things/<name>/jobs/+/update/+`, one per
//! device). It answers exactly what [`topic::matches`](super::topic::matches)
//! answers for each filter it holds; a property test checks that.

use std::collections::HashMap;
use std::sync::Arc;

use super::{QoS, SubscriberId, Subscribers};

/// Wildcard filters and their subscribers.
#[derive(Debug, Default)]
pub(super) struct WildcardIndex {
    root: Node,
    /// Distinct filter strings held.
    filters: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by literal level.
    levels: HashMap<Arc<str>, Node>,
    /// The child for a `+` level.
    plus: Option<Box<Node>>,
    /// Subscribers of the filter that ends here with `#`.
    hash: Subscribers,
    /// Subscribers of the filter that ends at this node.
    end: Subscribers,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.levels.is_empty() && self.plus.is_none() && self.hash.is_empty() && self.end.is_empty()
    }
}

impl WildcardIndex {
    /// How many distinct filters the index holds.
    pub(super) fn len(&self) -> usize {
        self.filters
    }

    /// Adds (or re-grants) `id`'s subscription to `filter`.
    pub(super) fn insert(&mut self, filter: &str, id: SubscriberId, qos: QoS) {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let subs = loop {
            let Some(level) = levels.next() else {
                break &mut node.end;
            };
            if level == "#" && levels.peek().is_none() {
                break &mut node.hash;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.levels.entry(Arc::from(level)).or_default()
            };
        };
        if subs.is_empty() {
            self.filters += 1;
        }
        subs.insert(id, qos);
    }

    /// Takes `id`'s subscription to `filter` out, pruning emptied nodes.
    pub(super) fn remove(&mut self, filter: &str, id: SubscriberId) {
        let levels: Vec<&str> = filter.split('/').collect();
        if remove_in(&mut self.root, &levels, id) == Some(true) {
            self.filters -= 1;
        }
    }

    /// Calls `hit` for every subscription whose filter matches `topic`.
    pub(super) fn matching(&self, topic: &str, hit: &mut impl FnMut(SubscriberId, QoS)) {
        let levels: Vec<&str> = topic.split('/').collect();
        // A filter that starts with a wildcard never matches a `$` topic
        // [MQTT-4.7.2-1].
        let reserved = topic.starts_with('$');
        visit(&self.root, &levels, !reserved, hit);
    }
}

/// Removes `id` from the filter at `levels` below `node`: `None` when the
/// filter was not held, else whether the filter lost its last subscriber.
fn remove_in(node: &mut Node, levels: &[&str], id: SubscriberId) -> Option<bool> {
    let Some((level, rest)) = levels.split_first() else {
        return Some(node.end.remove(&id).is_some() && node.end.is_empty());
    };
    if *level == "#" && rest.is_empty() {
        return Some(node.hash.remove(&id).is_some() && node.hash.is_empty());
    }
    let emptied;
    if *level == "+" {
        let child = node.plus.as_mut()?;
        emptied = remove_in(child, rest, id)?;
        if child.is_empty() {
            node.plus = None;
        }
    } else {
        let child = node.levels.get_mut(*level)?;
        emptied = remove_in(child, rest, id)?;
        if child.is_empty() {
            node.levels.remove(*level);
        }
    }
    Some(emptied)
}

fn visit(node: &Node, levels: &[&str], wildcards: bool, hit: &mut impl FnMut(SubscriberId, QoS)) {
    // `#` matches the rest, including nothing: `a/#` matches `a`.
    if wildcards {
        for (id, qos) in &node.hash {
            hit(*id, *qos);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        for (id, qos) in &node.end {
            hit(*id, *qos);
        }
        return;
    };
    if let Some(child) = node.levels.get(*level) {
        visit(child, rest, true, hit);
    }
    if wildcards && let Some(child) = &node.plus {
        visit(child, rest, true, hit);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::bus::topic::matches;

    fn matched(index: &WildcardIndex, topic: &str) -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        index.matching(topic, &mut |id, _| {
            ids.insert(id.get());
        });
        ids
    }

    #[test]
    fn levels_plus_and_hash() {
        let mut index = WildcardIndex::default();
        let filters = [
            "a/+",
            "a/#",
            "+/b",
            "#",
            "$aws/things/+/jobs/+/update/+",
            "a/+/c",
        ];
        for (i, f) in filters.iter().enumerate() {
            index.insert(f, SubscriberId(i as u64), QoS::AtLeastOnce);
        }
        assert_eq!(index.len(), 6);
        assert_eq!(matched(&index, "a"), BTreeSet::from([1, 3]));
        assert_eq!(matched(&index, "a/b"), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(matched(&index, "a/x/c"), BTreeSet::from([1, 3, 5]));
        assert_eq!(
            matched(&index, "$aws/things/t/jobs/j/update/accepted"),
            BTreeSet::from([4])
        );
        assert_eq!(matched(&index, "$aws/b"), BTreeSet::new());
        index.remove("a/+/c", SubscriberId(5));
        index.remove("a/+/c", SubscriberId(5));
        index.remove("never/+", SubscriberId(1));
        assert_eq!(index.len(), 5);
        assert_eq!(matched(&index, "a/x/c"), BTreeSet::from([1, 3]));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("$aws".to_owned()),
        ]
    }

    fn filter_level() -> impl Strategy<Value = String> {
        prop_oneof![level(), Just("+".to_owned())]
    }

    proptest! {
        #[test]
        fn answers_what_matches_answers(
            filters in prop::collection::vec(
                (prop::collection::vec(filter_level(), 1..4), any::<bool>()), 1..12),
            topics in prop::collection::vec(prop::collection::vec(level(), 1..5), 1..12),
            removed in prop::collection::vec(any::<bool>(), 12),
        ) {
            let mut index = WildcardIndex::default();
            let mut held = Vec::new();
            for (i, (levels, hash)) in filters.iter().enumerate() {
                let mut filter = levels.join("/");
                if *hash {
                    filter.push_str("/#");
                }
                let id = SubscriberId(i as u64);
                index.insert(&filter, id, QoS::AtMostOnce);
                if removed[i] {
                    index.remove(&filter, id);
                } else {
                    held.push((filter, id));
                }
            }
            for levels in &topics {
                let topic = levels.join("/");
                let expected: BTreeSet<u64> = held
                    .iter()
                    .filter(|(filter, _)| matches(filter, &topic))
                    .map(|(_, id)| id.get())
                    .collect();
                prop_assert_eq!(matched(&index, &topic), expected, "topic {:?}", topic);
            }
        }
    }
}
