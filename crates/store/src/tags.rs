//! Resource tags, kept beside a service's state: `tag/<arn>/<key>` holds the
//! value. The services check AWS's rules ([`herald_proto`]'s `tags`) and say
//! which key proves a resource exists; this module stores, lists and removes.

use serde::Serialize;

use crate::{Changes, Page, Paged, Store, Writer, key, prefix};

fn tag_key(arn: &str, tag: &str) -> Vec<u8> {
    key(&["tag", arn, tag])
}

/// What a tagging call needs from its service: the key whose presence says
/// the resource exists, and its errors.
pub struct Tagged<Err> {
    /// The resource's key in the state.
    pub resource: Vec<u8>,
    pub arn: String,
    /// The error for a resource that does not exist.
    pub missing: fn(&str) -> Err,
}

/// Fails with the target's own error when its resource does not exist.
fn require<E, Err>(c: &Changes<'_, E, Err>, target: &Tagged<Err>) -> Result<(), Err> {
    if c.exists(&target.resource)? {
        Ok(())
    } else {
        Err((target.missing)(&target.arn))
    }
}

/// Adds or replaces `tags` on the resource `arn`; the number of tags it
/// then has.
pub fn put<E, Err>(
    c: &mut Changes<'_, E, Err>,
    arn: &str,
    tags: &[(String, String)],
) -> Result<usize, Err> {
    for (k, v) in tags {
        c.put(tag_key(arn, k), v)?;
    }
    Ok(c.keys(&prefix(&["tag", arn]))?.len())
}

/// Removes every tag of the resource `arn` (it is being deleted).
pub fn remove_all<E, Err>(c: &mut Changes<'_, E, Err>, arn: &str) -> Result<(), Err> {
    for k in c.keys(&prefix(&["tag", arn]))? {
        c.remove(tag_key(arn, &k));
    }
    Ok(())
}

/// Tags an existing resource; `check` sees the number of tags it would
/// then have and may refuse (nothing is changed then).
pub async fn tag<E, Err>(
    writer: &Writer<E, Err>,
    target: Tagged<Err>,
    tags: Vec<(String, String)>,
    check: fn(&str, usize) -> Result<(), Err>,
) -> Result<(), Err>
where
    E: Serialize + Send + 'static,
    Err: Send + 'static,
{
    writer
        .mutate(move |c| {
            require(c, &target)?;
            let count = put(c, &target.arn, &tags)?;
            check(&target.arn, count)
        })
        .await
}

/// Removes the tags `keys` from an existing resource (a key it does not
/// have is no error).
pub async fn untag<E, Err>(
    writer: &Writer<E, Err>,
    target: Tagged<Err>,
    keys: Vec<String>,
) -> Result<(), Err>
where
    E: Serialize + Send + 'static,
    Err: Send + 'static,
{
    writer
        .mutate(move |c| {
            require(c, &target)?;
            for k in &keys {
                c.remove(tag_key(&target.arn, k));
            }
            Ok(())
        })
        .await
}

/// One page of an existing resource's tags, by key.
pub fn list<Err>(
    store: &Store<Err>,
    target: &Tagged<Err>,
    page: Page,
) -> Result<Paged<(String, String)>, Err> {
    require(&Changes::<(), Err>::new(store), target)?;
    let decoder = store.clone();
    let tags = store
        .iter(&prefix(&["tag", &target.arn]), page.after())
        .map(move |entry| {
            entry.and_then(|(k, bytes)| {
                let value: String = decoder.decode(&bytes)?;
                Ok((k.clone(), (k, value)))
            })
        });
    page.collect(tags)
}
