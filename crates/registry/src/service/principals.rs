//! Thing principals: attach, detach, and the lists both ways, each
//! attachment exclusive or not (AWS IoT API Reference:
//! AttachThingPrincipal's `thingPrincipalType`).

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, prefix};
use serde::{Deserialize, Serialize};

use super::{Registry, load_thing, thing_key};
use crate::domain::{Thing, check_name, check_principal, invalid, not_found};

/// How a principal is attached to a thing. An exclusive attachment makes the
/// thing the only one the principal is attached to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ThingPrincipalType {
    #[serde(rename = "EXCLUSIVE_THING")]
    Exclusive,
    #[default]
    #[serde(rename = "NON_EXCLUSIVE_THING")]
    NonExclusive,
}

impl ThingPrincipalType {
    /// The wire name; empty means the default, NON_EXCLUSIVE_THING.
    pub(crate) fn parse(name: &str) -> Result<ThingPrincipalType, AwsError> {
        match name {
            "" | "NON_EXCLUSIVE_THING" => Ok(ThingPrincipalType::NonExclusive),
            "EXCLUSIVE_THING" => Ok(ThingPrincipalType::Exclusive),
            other => Err(invalid(format!(
                "thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, not {other:?}"
            ))),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ThingPrincipalType::Exclusive => "EXCLUSIVE_THING",
            ThingPrincipalType::NonExclusive => "NON_EXCLUSIVE_THING",
        }
    }
}

/// An attachment's stored value; attachments made before types existed
/// hold `null`, which is NON_EXCLUSIVE_THING.
fn decode_type(store: &super::Store, bytes: &[u8]) -> Result<ThingPrincipalType, AwsError> {
    Ok(store
        .decode::<Option<ThingPrincipalType>>(bytes)?
        .unwrap_or_default())
}

impl Registry {
    pub(crate) async fn attach_thing_principal(
        &self,
        thing: String,
        principal: String,
        kind: ThingPrincipalType,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                for other in c.keys(&prefix(&["pthing", &principal]))? {
                    if other == thing {
                        continue;
                    }
                    if kind == ThingPrincipalType::Exclusive {
                        return Err(invalid(format!(
                            "Principal {principal} is attached to thing {other}; it cannot be attached exclusively to thing {thing}."
                        )));
                    }
                    let existing = c
                        .get::<Option<ThingPrincipalType>>(&key(&["pthing", &principal, &other]))?
                        .flatten()
                        .unwrap_or_default();
                    if existing == ThingPrincipalType::Exclusive {
                        return Err(invalid(format!(
                            "Principal {principal} is attached exclusively to thing {other}; it cannot be attached to thing {thing}."
                        )));
                    }
                }
                c.put(key(&["tprin", &thing, &principal]), &kind)?;
                c.put(key(&["pthing", &principal, &thing]), &kind)
            })
            .await
    }

    pub(crate) async fn detach_thing_principal(
        &self,
        thing: String,
        principal: String,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                if c.exists(&key(&["tprin", &thing, &principal]))? {
                    c.remove(key(&["tprin", &thing, &principal]));
                    c.remove(key(&["pthing", &principal, &thing]));
                }
                Ok(())
            })
            .await
    }

    /// A thing's principals and how each is attached, those of `only` type
    /// when given.
    pub(crate) fn list_thing_principals(
        &self,
        thing: &str,
        only: Option<ThingPrincipalType>,
        page: Page,
    ) -> Result<Paged<(String, ThingPrincipalType)>, AwsError> {
        check_name("thing name", thing)?;
        if self.reader().get::<Thing>(&thing_key(thing))?.is_none() {
            return Err(not_found(format!(
                "Failed to list principals for thing {thing} because the thing does not exist in your account"
            )));
        }
        self.attachments(&prefix(&["tprin", thing]), only, page)
    }

    /// A principal's things and how each is attached, those of `only` type
    /// when given.
    pub(crate) fn list_principal_things(
        &self,
        principal: &str,
        only: Option<ThingPrincipalType>,
        page: Page,
    ) -> Result<Paged<(String, ThingPrincipalType)>, AwsError> {
        check_principal(principal)?;
        self.attachments(&prefix(&["pthing", principal]), only, page)
    }

    fn attachments(
        &self,
        under: &[u8],
        only: Option<ThingPrincipalType>,
        page: Page,
    ) -> Result<Paged<(String, ThingPrincipalType)>, AwsError> {
        let store = &self.store;
        let entries = store
            .iter(under, page.after())
            .map(|entry| {
                let (name, bytes) = entry?;
                Ok((name, decode_type(store, &bytes)?))
            })
            .filter(|entry: &Result<_, AwsError>| match (entry, only) {
                (Ok((_, kind)), Some(only)) => *kind == only,
                _ => true,
            })
            .map(|entry| entry.map(|(name, kind)| (name.clone(), (name, kind))));
        page.collect(entries)
    }
}
