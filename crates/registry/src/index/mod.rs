//! Fleet indexing (AWS IoT developer guide: "Fleet indexing"): an in-memory
//! index of things and thing groups, kept from the change log, that answers
//! SearchIndex and the aggregations without scanning the registry.
//!
//! The index loads the registry's state once at start and then applies every
//! change-log event after the sequence it loaded from (events carry the
//! state they leave, so replaying a few the load already saw converges). A
//! query first waits until the index has applied everything durable when
//! the query arrived: a search sees every mutation acknowledged before it.
//!
//! Each document's fields (`thingName`, `attributes.room`, ...) are kept in
//! per-field maps from value to names, and numeric values again in numeric
//! order, so a term is a map lookup, a wildcard a scan of the values with
//! its literal prefix, and a range a walk of one ordered map.
//!
//! Connectivity (`connectivity.connected`, `.timestamp`,
//! `.disconnectReason`) comes from the gateway, which reports each connect
//! and disconnect; it lives in memory only, so after a registry restart
//! every thing reads as disconnected until its device reconnects.
//!
//! Shadows (`shadow.reported.*`, `shadow.name.<name>.*`, see [`shadow`]) are
//! not in the change log: the shadow service hands each committed update
//! and delete to the index before it answers, so a search sees every
//! acknowledged shadow change too, and the load reads them from the store.

pub(crate) mod query;
pub(crate) mod shadow;

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound as RangeBound,
    sync::{Arc, RwLock},
    time::Duration,
};

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{ChangeLog, prefix};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::{ChangeRecord, EventBody, Operation, Thing, ThingGroup, shadow::Shadow};
use query::{Bound, Pattern, Query};
use shadow::{HeldShadow, ShadowSelection, ThingShadows};

type Store = herald_store::Store<AwsError>;

/// The index of things, as AWS names it.
pub(crate) const THINGS_INDEX: &str = "AWS_Things";
/// The index of thing groups.
pub(crate) const GROUPS_INDEX: &str = "AWS_ThingGroups";

/// How long a query waits for the index to apply what was durable when it
/// arrived before answering `IndexNotReadyException`.
const CATCH_UP: Duration = Duration::from_secs(5);

/// What the gateway last reported about a client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connectivity {
    pub(crate) connected: bool,
    pub(crate) timestamp_ms: i64,
    pub(crate) disconnect_reason: Option<String>,
}

/// A thing as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThingDoc {
    pub(crate) name: Arc<str>,
    pub(crate) id: String,
    pub(crate) type_name: Option<String>,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) groups: BTreeSet<String>,
}

/// A thing group as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDoc {
    pub(crate) name: Arc<str>,
    pub(crate) id: String,
    pub(crate) description: Option<String>,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) parents: Vec<String>,
}

/// A number as the numeric maps order it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Num(f64);

impl Eq for Num {}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A value as a number, when it reads as a finite one.
fn number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Every document's fields: value to names, and numbers to names.
#[derive(Debug, Default)]
struct Fields {
    text: HashMap<String, BTreeMap<String, BTreeSet<Arc<str>>>>,
    numeric: HashMap<String, BTreeMap<Num, BTreeSet<Arc<str>>>>,
}

impl Fields {
    fn insert(&mut self, name: &Arc<str>, fields: &[(String, String)]) {
        for (field, value) in fields {
            self.text
                .entry(field.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(name.clone());
            if let Some(n) = number(value) {
                self.numeric
                    .entry(field.clone())
                    .or_default()
                    .entry(Num(n))
                    .or_default()
                    .insert(name.clone());
            }
        }
    }

    fn remove(&mut self, name: &str, fields: &[(String, String)]) {
        for (field, value) in fields {
            if let Some(values) = self.text.get_mut(field) {
                if let Some(names) = values.get_mut(value) {
                    names.remove(name);
                    if names.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.text.remove(field);
                }
            }
            if let (Some(n), Some(values)) = (number(value), self.numeric.get_mut(field)) {
                if let Some(names) = values.get_mut(&Num(n)) {
                    names.remove(name);
                    if names.is_empty() {
                        values.remove(&Num(n));
                    }
                }
                if values.is_empty() {
                    self.numeric.remove(field);
                }
            }
        }
    }

    /// The names with `field` matching `pattern`.
    fn matching(&self, field: &str, pattern: &Pattern) -> BTreeSet<Arc<str>> {
        let mut out = BTreeSet::new();
        let Some(values) = self.text.get(field) else {
            return out;
        };
        match pattern {
            Pattern::Exact(value) => {
                if let Some(names) = values.get(value) {
                    out.extend(names.iter().cloned());
                }
            }
            Pattern::Wildcard(_) => {
                let start = pattern.literal_prefix();
                for (value, names) in
                    values.range::<str, _>((RangeBound::Included(start), RangeBound::Unbounded))
                {
                    if !value.starts_with(start) {
                        break;
                    }
                    if pattern.matches(value) {
                        out.extend(names.iter().cloned());
                    }
                }
            }
        }
        out
    }

    /// The names with `field` in the range: numerically when both ends are
    /// numbers (or open), otherwise in text order.
    fn in_range(
        &self,
        field: &str,
        lower: Option<&Bound>,
        upper: Option<&Bound>,
    ) -> BTreeSet<Arc<str>> {
        let mut out = BTreeSet::new();
        let numeric_end = |b: Option<&Bound>| b.is_none_or(|b| number(&b.value).is_some());
        if numeric_end(lower) && numeric_end(upper) {
            let Some(values) = self.numeric.get(field) else {
                return out;
            };
            let end = |b: Option<&Bound>| match b {
                None => RangeBound::Unbounded,
                Some(b) => {
                    let n = Num(number(&b.value).unwrap_or(0.0));
                    if b.inclusive {
                        RangeBound::Included(n)
                    } else {
                        RangeBound::Excluded(n)
                    }
                }
            };
            let (lo, hi) = (end(lower), end(upper));
            if range_is_empty(&lo, &hi) {
                return out;
            }
            for names in values.range((lo, hi)).map(|(_, names)| names) {
                out.extend(names.iter().cloned());
            }
            return out;
        }
        let Some(values) = self.text.get(field) else {
            return out;
        };
        let end = |b: Option<&Bound>| match b {
            None => RangeBound::Unbounded,
            Some(b) if b.inclusive => RangeBound::Included(b.value.clone()),
            Some(b) => RangeBound::Excluded(b.value.clone()),
        };
        let (lo, hi) = (end(lower), end(upper));
        if range_is_empty(&lo, &hi) {
            return out;
        }
        for names in values.range((lo, hi)).map(|(_, names)| names) {
            out.extend(names.iter().cloned());
        }
        out
    }

    /// Every value of `field` with its names.
    fn values(&self, field: &str) -> impl Iterator<Item = (&String, &BTreeSet<Arc<str>>)> {
        self.text.get(field).into_iter().flatten()
    }
}

/// Whether a range's ends cross (BTreeMap::range panics on those).
fn range_is_empty<T: Ord>(lo: &RangeBound<T>, hi: &RangeBound<T>) -> bool {
    match (lo, hi) {
        (RangeBound::Included(a), RangeBound::Included(b)) => a > b,
        (RangeBound::Included(a) | RangeBound::Excluded(a), RangeBound::Excluded(b))
        | (RangeBound::Excluded(a), RangeBound::Included(b)) => a >= b,
        _ => false,
    }
}

fn thing_fields(
    doc: &ThingDoc,
    connectivity: Option<&Connectivity>,
    shadows: Option<&ThingShadows>,
) -> Vec<(String, String)> {
    let mut fields = vec![
        ("thingName".to_owned(), doc.name.to_string()),
        ("thingId".to_owned(), doc.id.clone()),
    ];
    if let Some(t) = &doc.type_name {
        fields.push(("thingTypeName".into(), t.clone()));
    }
    for group in &doc.groups {
        fields.push(("thingGroupNames".into(), group.clone()));
    }
    for (k, v) in &doc.attributes {
        fields.push((format!("attributes.{k}"), v.clone()));
    }
    let connected = connectivity.is_some_and(|c| c.connected);
    fields.push(("connectivity.connected".into(), connected.to_string()));
    if let Some(c) = connectivity {
        fields.push(("connectivity.timestamp".into(), c.timestamp_ms.to_string()));
        if let Some(reason) = &c.disconnect_reason {
            fields.push(("connectivity.disconnectReason".into(), reason.clone()));
        }
    }
    if let Some(shadows) = shadows {
        shadow::fields(shadows, &mut fields);
    }
    fields
}

fn group_fields(doc: &GroupDoc) -> Vec<(String, String)> {
    let mut fields = vec![
        ("thingGroupName".to_owned(), doc.name.to_string()),
        ("thingGroupId".to_owned(), doc.id.clone()),
    ];
    if let Some(d) = &doc.description {
        fields.push(("thingGroupDescription".into(), d.clone()));
    }
    for (k, v) in &doc.attributes {
        fields.push((format!("attributes.{k}"), v.clone()));
    }
    for p in &doc.parents {
        fields.push(("parentGroupNames".into(), p.clone()));
    }
    fields
}

/// Which index a query runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Things,
    Groups,
}

impl IndexKind {
    /// The index a name names; an unknown one is `ResourceNotFoundException`.
    pub(crate) fn named(name: Option<&str>) -> Result<IndexKind, AwsError> {
        match name.unwrap_or(THINGS_INDEX) {
            THINGS_INDEX => Ok(IndexKind::Things),
            GROUPS_INDEX => Ok(IndexKind::Groups),
            other => Err(AwsError::new(
                ErrorType::ResourceNotFound,
                format!("Index {other} does not exist"),
            )),
        }
    }

    fn name_field(self) -> &'static str {
        match self {
            IndexKind::Things => "thingName",
            IndexKind::Groups => "thingGroupName",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    things: BTreeMap<Arc<str>, ThingDoc>,
    thing_fields: Fields,
    groups: BTreeMap<Arc<str>, GroupDoc>,
    group_fields: Fields,
    /// Reported by the gateway, by client id (the thing name when it names a thing).
    connectivity: HashMap<String, Connectivity>,
    /// Every thing name's shadows, registered thing or not.
    shadows: HashMap<String, ThingShadows>,
}

impl State {
    /// A thing's fields, with what is known of its connection and shadows.
    fn fields_of(&self, doc: &ThingDoc) -> Vec<(String, String)> {
        thing_fields(
            doc,
            self.connectivity.get(&*doc.name),
            self.shadows.get(&*doc.name),
        )
    }

    fn put_thing(&mut self, doc: ThingDoc) {
        if let Some(old) = self.things.remove(&doc.name) {
            let fields = self.fields_of(&old);
            self.thing_fields.remove(&old.name, &fields);
        }
        let fields = self.fields_of(&doc);
        self.thing_fields.insert(&doc.name, &fields);
        self.things.insert(doc.name.clone(), doc);
    }

    fn remove_thing(&mut self, name: &str) {
        if let Some(old) = self.things.remove(name) {
            let fields = self.fields_of(&old);
            self.thing_fields.remove(&old.name, &fields);
        }
    }

    /// Records a shadow's new state (`None`: deleted) unless what is held
    /// is newer; whether a thing's document changed (the thing is
    /// registered).
    fn set_shadow(&mut self, thing: &str, name: &str, held: HeldShadow) -> bool {
        let current = self.shadows.get(thing).and_then(|s| s.get(name));
        if current.is_some_and(|current| !held.supersedes(current)) {
            return false;
        }
        let doc = self.things.get(thing).cloned();
        if let Some(doc) = &doc {
            let fields = self.fields_of(doc);
            self.thing_fields.remove(&doc.name, &fields);
        }
        self.shadows
            .entry(thing.to_owned())
            .or_default()
            .insert(name.to_owned(), held);
        if let Some(doc) = &doc {
            let fields = self.fields_of(doc);
            self.thing_fields.insert(&doc.name, &fields);
        }
        doc.is_some()
    }

    fn put_group(&mut self, doc: GroupDoc) {
        if let Some(old) = self.groups.remove(&doc.name) {
            self.group_fields.remove(&old.name, &group_fields(&old));
        }
        self.group_fields.insert(&doc.name, &group_fields(&doc));
        self.groups.insert(doc.name.clone(), doc);
    }

    fn remove_group(&mut self, name: &str) {
        if let Some(old) = self.groups.remove(name) {
            self.group_fields.remove(&old.name, &group_fields(&old));
        }
    }

    fn set_membership(&mut self, thing: &str, group: &str, member: bool) {
        let Some(mut doc) = self.things.get(thing).cloned() else {
            return;
        };
        if member {
            doc.groups.insert(group.to_owned());
        } else {
            doc.groups.remove(group);
        }
        self.put_thing(doc);
    }

    fn set_connectivity(&mut self, client_id: &str, connectivity: Connectivity) {
        let doc = self.things.get(client_id).cloned();
        if let Some(doc) = &doc {
            let fields = self.fields_of(doc);
            self.thing_fields.remove(&doc.name, &fields);
        }
        self.connectivity.insert(client_id.to_owned(), connectivity);
        if let Some(doc) = &doc {
            let fields = self.fields_of(doc);
            self.thing_fields.insert(&doc.name, &fields);
        }
    }

    fn apply(&mut self, record: &ChangeRecord) {
        let op = record.event.operation;
        match &record.event.body {
            EventBody::Thing { thing } => match op {
                Some(Operation::Deleted) => self.remove_thing(&thing.name),
                _ => {
                    let groups = self
                        .things
                        .get(thing.name.as_str())
                        .map(|d| d.groups.clone())
                        .unwrap_or_default();
                    self.put_thing(thing_doc(thing, groups));
                }
            },
            EventBody::ThingGroupMembership {
                group_name,
                thing_name,
                ..
            } => self.set_membership(thing_name, group_name, op != Some(Operation::Removed)),
            EventBody::ThingGroup { group } => match op {
                Some(Operation::Deleted) => self.remove_group(&group.name),
                _ => self.put_group(group_doc(group)),
            },
            _ => {}
        }
    }

    fn fields(&self, kind: IndexKind) -> &Fields {
        match kind {
            IndexKind::Things => &self.thing_fields,
            IndexKind::Groups => &self.group_fields,
        }
    }

    fn universe(&self, kind: IndexKind) -> BTreeSet<Arc<str>> {
        match kind {
            IndexKind::Things => self.things.keys().cloned().collect(),
            IndexKind::Groups => self.groups.keys().cloned().collect(),
        }
    }

    fn eval(&self, kind: IndexKind, query: &Query) -> BTreeSet<Arc<str>> {
        let fields = self.fields(kind);
        match query {
            Query::All => self.universe(kind),
            Query::Match { field, value } => {
                fields.matching(field.as_deref().unwrap_or(kind.name_field()), value)
            }
            Query::Range {
                field,
                lower,
                upper,
            } => fields.in_range(field, lower.as_ref(), upper.as_ref()),
            Query::And(all) => {
                // The most selective first; then each of the others narrows it.
                let mut sets: Vec<BTreeSet<Arc<str>>> =
                    all.iter().map(|q| self.eval(kind, q)).collect();
                sets.sort_by_key(BTreeSet::len);
                let mut sets = sets.into_iter();
                let mut out = sets.next().unwrap_or_default();
                for set in sets {
                    out.retain(|name| set.contains(name));
                }
                out
            }
            Query::Or(any) => any.iter().flat_map(|q| self.eval(kind, q)).collect(),
            Query::Not(inner) => {
                let excluded = self.eval(kind, inner);
                self.universe(kind)
                    .into_iter()
                    .filter(|name| !excluded.contains(name))
                    .collect()
            }
        }
    }
}

/// Runs `query` on a few documents of each index (the fuzz target's
/// evaluator).
pub(crate) fn evaluate_on_sample(query: &Query) {
    let mut state = State::default();
    for (i, room) in ["hall", "ü", "9.5", ""].into_iter().enumerate() {
        let name: Arc<str> = format!("t{i}").into();
        state.put_thing(ThingDoc {
            name: name.clone(),
            id: format!("id-{i}"),
            type_name: Some("lamp".into()),
            attributes: BTreeMap::from([("room".to_owned(), room.to_owned())]),
            groups: BTreeSet::from(["g".to_owned()]),
        });
        state.put_group(GroupDoc {
            name,
            id: format!("gid-{i}"),
            description: Some(room.to_owned()),
            attributes: BTreeMap::new(),
            parents: Vec::new(),
        });
    }
    for kind in [IndexKind::Things, IndexKind::Groups] {
        let _ = state.eval(kind, query);
    }
}

fn thing_doc(thing: &Thing, groups: BTreeSet<String>) -> ThingDoc {
    ThingDoc {
        name: thing.name.as_str().into(),
        id: thing.id.clone(),
        type_name: thing.type_name.clone(),
        attributes: thing
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        groups,
    }
}

fn group_doc(group: &ThingGroup) -> GroupDoc {
    GroupDoc {
        name: group.name.as_str().into(),
        id: group.id.clone(),
        description: group.description.clone(),
        attributes: group
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        parents: group.ancestors.iter().map(|g| g.name.clone()).collect(),
    }
}

/// A thing found by a search: its document, what its client last reported,
/// and its selected shadows as the document's `shadow` JSON.
#[derive(Debug)]
pub(crate) struct FoundThing {
    pub(crate) doc: ThingDoc,
    pub(crate) connectivity: Option<Connectivity>,
    pub(crate) shadow: Option<String>,
}

/// A search's documents.
#[derive(Debug)]
pub(crate) enum Found {
    Things(Vec<FoundThing>),
    Groups(Vec<GroupDoc>),
}

/// The fleet index. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Index {
    state: Arc<RwLock<State>>,
    applied: Arc<watch::Sender<u64>>,
    /// Bumped whenever a document may have changed (a batch of events
    /// applied, a connectivity report): what dynamic groups follow.
    changed: Arc<watch::Sender<u64>>,
    log: ChangeLog,
}

impl Index {
    /// Loads the registry's things, memberships, groups and shadows; the
    /// returned index has applied the log up to the sequence it loaded at.
    pub(crate) fn load(store: &Store, log: ChangeLog) -> Result<Index, AwsError> {
        let at = log.last_sequence();
        let mut state = State::default();
        for entry in store.iter(&prefix(&["group"]), None) {
            let (_, bytes) = entry?;
            let group: ThingGroup = store.decode(&bytes)?;
            state.put_group(group_doc(&group));
        }
        for entry in store.iter(&prefix(&["shadow"]), None) {
            let (names, bytes) = entry?;
            let Some((thing, name)) = names.split_once('\0') else {
                continue;
            };
            let shadow: Shadow = store.decode(&bytes)?;
            let held = HeldShadow {
                version: shadow.version,
                shadow: Some(shadow),
            };
            state.set_shadow(thing, name, held);
        }
        for entry in store.iter(&prefix(&["thing"]), None) {
            let (name, bytes) = entry?;
            let thing: Thing = store.decode(&bytes)?;
            let groups = store.keys(&prefix(&["tmem", &name]))?.into_iter().collect();
            state.put_thing(thing_doc(&thing, groups));
        }
        let (applied, _) = watch::channel(at);
        let (changed, _) = watch::channel(0);
        Ok(Index {
            state: Arc::new(RwLock::new(state)),
            applied: Arc::new(applied),
            changed: Arc::new(changed),
            log,
        })
    }

    /// Applies the change log after the loaded sequence until `shutdown`.
    pub(crate) async fn follow(self, shutdown: CancellationToken) {
        let from = *self.applied.borrow();
        let (tx, mut rx) = mpsc::channel(4);
        let follower = tokio::spawn(self.log.clone().follow::<crate::domain::Event>(
            from,
            false,
            tx,
            shutdown.clone(),
        ));
        while let Some(batch) = rx.recv().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!(
                        error = err.message(),
                        "the fleet index stopped following the change log"
                    );
                    break;
                }
            };
            let last = batch.last().map(|r| r.sequence);
            {
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                for record in &batch {
                    state.apply(record);
                }
            }
            if let Some(last) = last {
                self.applied.send_replace(last);
                self.changed.send_modify(|n| *n += 1);
            }
        }
        let _ = follower.await;
    }

    /// Waits until the index has applied everything durable now.
    async fn caught_up(&self) -> Result<(), AwsError> {
        let target = self.log.last_sequence();
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(CATCH_UP, applied.wait_for(|a| *a >= target)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AwsError::new(
                ErrorType::IndexNotReady,
                "The index has not caught up with the registry yet; try again",
            )),
        }
    }

    /// Empties the index once it has applied everything durable (test mode's
    /// reset, which wipes the registry without logging).
    pub(crate) async fn clear(&self) -> Result<(), AwsError> {
        self.caught_up().await?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let connectivity = std::mem::take(&mut state.connectivity);
        *state = State {
            connectivity,
            ..State::default()
        };
        Ok(())
    }

    /// Records a shadow's state after a committed update (`Some`) or delete
    /// (`None`) at `version`. Commits acknowledged out of order are sorted
    /// by version: an older state never replaces a newer one.
    pub(crate) fn put_shadow(&self, thing: &str, name: &str, version: u64, shadow: Option<Shadow>) {
        let held = HeldShadow { version, shadow };
        let changed = self
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_shadow(thing, name, held);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Tells what follows the index (dynamic groups) to look again: what the
    /// index shows changed (its configuration did).
    pub(crate) fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Records a client's connection state, as the gateway reports it; an
    /// older report than the one held is ignored.
    pub(crate) fn report_connectivity(&self, client_id: &str, connectivity: Connectivity) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state
            .connectivity
            .get(client_id)
            .is_some_and(|held| held.timestamp_ms > connectivity.timestamp_ms)
        {
            return;
        }
        state.set_connectivity(client_id, connectivity);
        drop(state);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Changes whenever a document may have changed.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The names matching `query` in `kind`'s index, in name order.
    pub(crate) async fn names(
        &self,
        kind: IndexKind,
        query: &Query,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        self.caught_up().await?;
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Ok(state.eval(kind, query).into_iter().collect())
    }

    /// Up to `max` documents matching `query` after the name `after`, with
    /// the `shadows` selected.
    pub(crate) async fn search(
        &self,
        kind: IndexKind,
        query: &Query,
        after: Option<&str>,
        max: usize,
        shadows: &ShadowSelection,
    ) -> Result<(Found, bool), AwsError> {
        self.caught_up().await?;
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let start = after.map_or(RangeBound::Unbounded, RangeBound::Excluded);
        let (chosen, more): (Vec<Arc<str>>, bool) = if *query == Query::All {
            // Everything: page through the documents themselves.
            let mut page: Box<dyn Iterator<Item = &Arc<str>>> = match kind {
                IndexKind::Things => Box::new(
                    state
                        .things
                        .range::<str, _>((start, RangeBound::Unbounded))
                        .map(|(n, _)| n),
                ),
                IndexKind::Groups => Box::new(
                    state
                        .groups
                        .range::<str, _>((start, RangeBound::Unbounded))
                        .map(|(n, _)| n),
                ),
            };
            let chosen = page.by_ref().take(max).cloned().collect();
            (chosen, page.next().is_some())
        } else {
            let names = state.eval(kind, query);
            let mut page = names.range::<str, _>((start, RangeBound::Unbounded));
            let chosen = page.by_ref().take(max).cloned().collect();
            (chosen, page.next().is_some())
        };
        let found = match kind {
            IndexKind::Things => Found::Things(
                chosen
                    .iter()
                    .filter_map(|n| {
                        Some(FoundThing {
                            doc: state.things.get(n)?.clone(),
                            connectivity: state.connectivity.get(&**n).cloned(),
                            shadow: shadows.document(state.shadows.get(&**n)),
                        })
                    })
                    .collect(),
            ),
            IndexKind::Groups => Found::Groups(
                chosen
                    .iter()
                    .filter_map(|n| state.groups.get(n).cloned())
                    .collect(),
            ),
        };
        Ok((found, more))
    }

    /// The values of `field` of the documents matching `query`: one entry per
    /// document that has it (several for a multi-valued field).
    pub(crate) async fn field_values(
        &self,
        kind: IndexKind,
        query: &Query,
        field: &str,
    ) -> Result<Vec<String>, AwsError> {
        self.caught_up().await?;
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let names = state.eval(kind, query);
        let mut values = Vec::new();
        let distinct = state.fields(kind).text.get(field).map_or(0, BTreeMap::len);
        if names.len() < distinct {
            // Fewer documents than values: read each document's fields.
            for name in &names {
                let fields = match kind {
                    IndexKind::Things => state.things.get(name).map(|doc| state.fields_of(doc)),
                    IndexKind::Groups => state.groups.get(name).map(group_fields),
                };
                values.extend(
                    fields
                        .into_iter()
                        .flatten()
                        .filter(|(f, _)| f == field)
                        .map(|(_, v)| v),
                );
            }
            return Ok(values);
        }
        for (value, holders) in state.fields(kind).values(field) {
            let n = if holders.len() < names.len() {
                holders.iter().filter(|h| names.contains(*h)).count()
            } else {
                names.iter().filter(|n| holders.contains(*n)).count()
            };
            values.extend(std::iter::repeat_n(value.clone(), n));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, attributes: &[(&str, &str)], groups: &[&str]) -> ThingDoc {
        ThingDoc {
            name: name.into(),
            id: format!("id-{name}"),
            type_name: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn names(state: &State, q: &str) -> Vec<String> {
        let query = query::parse(q).unwrap();
        state
            .eval(IndexKind::Things, &query)
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn terms_wildcards_ranges_and_boolean_operators() {
        let mut state = State::default();
        state.put_thing(doc(
            "lamp-1",
            &[("room", "hall"), ("watts", "60")],
            &["lights"],
        ));
        state.put_thing(doc("lamp-2", &[("room", "hallway"), ("watts", "100")], &[]));
        state.put_thing(doc("fan-1", &[("room", "kitchen"), ("watts", "9.5")], &[]));
        assert_eq!(names(&state, "*"), ["fan-1", "lamp-1", "lamp-2"]);
        assert_eq!(names(&state, "lamp*"), ["lamp-1", "lamp-2"]);
        assert_eq!(names(&state, "attributes.room:hall"), ["lamp-1"]);
        assert_eq!(names(&state, "attributes.room:hall*"), ["lamp-1", "lamp-2"]);
        assert_eq!(names(&state, "attributes.room:h?ll"), ["lamp-1"]);
        assert_eq!(names(&state, "attributes.watts>50"), ["lamp-1", "lamp-2"]);
        assert_eq!(names(&state, "attributes.watts:[9.5 TO 60}"), ["fan-1"]);
        assert_eq!(
            names(&state, "attributes.watts:[* TO 60]"),
            ["fan-1", "lamp-1"]
        );
        assert_eq!(
            names(&state, "attributes.watts:[100 TO 9]"),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&state, "attributes.room:[hall TO hallway]"),
            ["lamp-1", "lamp-2"]
        );
        assert_eq!(names(&state, "thingGroupNames:lights"), ["lamp-1"]);
        assert_eq!(
            names(&state, "NOT thingGroupNames:lights"),
            ["fan-1", "lamp-2"]
        );
        assert_eq!(
            names(&state, "lamp* AND NOT (attributes.watts<70 OR fan*)"),
            ["lamp-2"]
        );
        assert_eq!(
            names(&state, "attributes.room:*"),
            ["fan-1", "lamp-1", "lamp-2"]
        );
        assert_eq!(
            names(&state, "connectivity.connected:false"),
            ["fan-1", "lamp-1", "lamp-2"]
        );

        // Updates and removals leave no stale entries.
        state.put_thing(doc("lamp-1", &[("room", "attic")], &[]));
        assert_eq!(names(&state, "attributes.room:hall"), Vec::<String>::new());
        assert_eq!(names(&state, "attributes.watts>0"), ["fan-1", "lamp-2"]);
        state.remove_thing("lamp-2");
        assert_eq!(names(&state, "attributes.watts>0"), ["fan-1"]);
        assert!(!state.thing_fields.text.contains_key("thingGroupNames"));
    }

    #[test]
    fn connectivity_reports_are_searchable_and_outlive_the_thing() {
        let mut state = State::default();
        state.put_thing(doc("lamp-1", &[], &[]));
        let report = |connected, ms| Connectivity {
            connected,
            timestamp_ms: ms,
            disconnect_reason: (!connected).then(|| "CLIENT_INITIATED_DISCONNECT".to_owned()),
        };
        state.set_connectivity("lamp-1", report(true, 1_000));
        state.set_connectivity("lamp-9", report(true, 1_500));
        assert_eq!(names(&state, "connectivity.connected:true"), ["lamp-1"]);
        assert_eq!(names(&state, "connectivity.timestamp>=1000"), ["lamp-1"]);
        state.set_connectivity("lamp-1", report(false, 2_000));
        assert_eq!(
            names(
                &state,
                "connectivity.disconnectReason:CLIENT_INITIATED_DISCONNECT"
            ),
            ["lamp-1"]
        );
        // A thing created later gets what its client reported.
        state.put_thing(doc("lamp-9", &[], &[]));
        assert_eq!(names(&state, "connectivity.connected:true"), ["lamp-9"]);
    }
}
