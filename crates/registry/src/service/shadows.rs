//! Device shadows, classic and named, kept beside the registry's other
//! state (`shadow/<thing>/<name>`, the classic shadow's name empty). A
//! shadow needs no registered thing, as on AWS. A deleted shadow leaves its
//! last version (`shadow-deleted/...`), which a new one continues from.
//! Each committed update and delete is handed to the fleet index. A thing's
//! requests are rate limited as AWS IoT's quota does (429 beyond it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{Page, Paged, key, prefix};
use serde_json::Value;

use super::{Changes, Registry};
use crate::domain::shadow::{self, Rejection, Shadow};

/// What a shadow request answers: accepted (`code` 0) with its `body`,
/// and for an update the `delta` and `documents` to publish; or refused
/// with the AWS `code` and the `/rejected` body.
#[derive(Debug)]
pub(crate) struct ShadowAnswer {
    pub(crate) code: u16,
    pub(crate) body: Value,
    pub(crate) delta: Option<Value>,
    pub(crate) documents: Option<Value>,
}

impl ShadowAnswer {
    fn accepted(body: Value) -> ShadowAnswer {
        ShadowAnswer {
            code: 0,
            body,
            delta: None,
            documents: None,
        }
    }

    fn refused(rejection: &Rejection, payload: &[u8], now: i64) -> ShadowAnswer {
        let token = shadow::client_token(payload);
        ShadowAnswer {
            code: rejection.code,
            body: shadow::rejected(rejection, token.as_deref(), now),
            delta: None,
            documents: None,
        }
    }
}

/// How many things' buckets are kept before the full ones are forgotten.
const TRACKED_THINGS: usize = 10_000;
/// How often, at most, the full buckets are looked for.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A token bucket per thing: `rate` requests a second, in bursts of as
/// many. A rate of 0 admits everything.
#[derive(Debug)]
pub(crate) struct ThingRate {
    rate: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    /// Thing → (tokens left, when they were counted).
    things: HashMap<String, (f64, Instant)>,
    /// When the full buckets were last forgotten.
    swept: Option<Instant>,
}

impl ThingRate {
    pub(crate) fn new(per_sec: u32) -> ThingRate {
        ThingRate {
            rate: f64::from(per_sec),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Forgets every bucket (test mode's reset).
    pub(crate) fn clear(&self) {
        *self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Buckets::default();
    }

    /// Whether `thing` may make a request at `now` (taking its token).
    pub(crate) fn admit(&self, thing: &str, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refill = |(tokens, at): (f64, Instant)| {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            (tokens + elapsed * self.rate).min(self.rate)
        };
        let due = buckets
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if buckets.things.len() >= TRACKED_THINGS && due && !buckets.things.contains_key(thing) {
            // A full bucket is the same as none; the others are the things
            // busy in the last second, bounded by the request rate.
            buckets
                .things
                .retain(|_, bucket| refill(*bucket) < self.rate);
            buckets.swept = Some(now);
        }
        let tokens = buckets.things.get(thing).map_or(self.rate, |b| refill(*b));
        let admitted = tokens >= 1.0;
        let left = if admitted { tokens - 1.0 } else { tokens };
        buckets.things.insert(thing.to_owned(), (left, now));
        admitted
    }
}

/// Runs `work` to its end even if the caller stops waiting (a client gone,
/// a call cancelled): a committed change must reach the fleet index.
async fn to_the_end<T: Send + 'static>(
    work: impl Future<Output = Result<T, AwsError>> + Send + 'static,
) -> Result<T, AwsError> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        Err(AwsError::new(
            ErrorType::InternalFailure,
            format!("the shadow request stopped: {e}"),
        ))
    })
}

/// Counts a request by `operation` and outcome (`accepted`, `rejected`,
/// or `throttled` beyond the thing's rate): `herald_shadow_requests_total`.
fn counted(operation: &'static str, answer: ShadowAnswer) -> ShadowAnswer {
    let outcome = match answer.code {
        0 => "accepted",
        429 => "throttled",
        _ => "rejected",
    };
    metrics::counter!("herald_shadow_requests_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
    answer
}

fn throttled() -> Rejection {
    Rejection {
        code: 429,
        message: "Too Many Requests".into(),
    }
}

/// What a committed update or delete leaves: the shadow's version and the
/// shadow (`None`: deleted); nothing when refused.
type Left = Option<(u64, Option<Shadow>)>;

fn shadow_key(thing: &str, name: &str) -> Vec<u8> {
    key(&["shadow", thing, name])
}

fn deleted_key(thing: &str, name: &str) -> Vec<u8> {
    key(&["shadow-deleted", thing, name])
}

fn now_secs() -> i64 {
    herald_store::now_ms() / 1000
}

/// The names' own rules (AWS: a thing name of 1 to 128 and a shadow name
/// of 1 to 64 of `a-zA-Z0-9:_-`).
fn check_names(thing: &str, name: &str) -> Result<(), Rejection> {
    let valid = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
    };
    if !valid(thing, 128) {
        return Err(Rejection {
            code: 400,
            message: "Invalid thing name".into(),
        });
    }
    if !name.is_empty() && !shadow::valid_shadow_name(name) {
        return Err(Rejection {
            code: 400,
            message: "Invalid shadow name".into(),
        });
    }
    Ok(())
}

impl Registry {
    /// A request's names checked, and the thing's rate.
    fn admit(&self, thing: &str, name: &str) -> Result<(), Rejection> {
        check_names(thing, name)?;
        if self.shadow_rate.admit(thing, Instant::now()) {
            Ok(())
        } else {
            Err(throttled())
        }
    }

    /// `update`: merges the request into the shadow (made if there is none).
    pub(crate) async fn update_shadow(
        &self,
        thing: String,
        name: String,
        payload: Vec<u8>,
    ) -> Result<ShadowAnswer, AwsError> {
        self.change(
            "update",
            thing,
            name,
            payload,
            |c, thing, name, payload, now| {
                let current: Option<Shadow> = c.get(&shadow_key(thing, name))?;
                let deleted: u64 = c.get(&deleted_key(thing, name))?.unwrap_or(0);
                Ok(
                    match shadow::update(current.as_ref(), deleted, payload, now) {
                        Ok(updated) => {
                            c.put(shadow_key(thing, name), &updated.shadow)?;
                            if deleted > 0 {
                                c.remove(deleted_key(thing, name));
                            }
                            let answer = ShadowAnswer {
                                code: 0,
                                body: updated.accepted,
                                delta: updated.delta,
                                documents: Some(updated.documents),
                            };
                            let version = updated.shadow.version;
                            (answer, Some((version, Some(updated.shadow))))
                        }
                        Err(rejection) => (ShadowAnswer::refused(&rejection, payload, now), None),
                    },
                )
            },
        )
        .await
    }

    /// `get`: the whole document, with its delta.
    pub(crate) fn get_shadow(
        &self,
        thing: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<ShadowAnswer, AwsError> {
        let now = now_secs();
        let answer = self.admit(thing, name).and_then(|()| {
            let current: Option<Shadow> =
                self.store
                    .get(&shadow_key(thing, name))
                    .map_err(|e| Rejection {
                        code: 500,
                        message: format!("Internal service failure: {}", e.message),
                    })?;
            shadow::get(current.as_ref(), thing, name, payload, now)
        });
        Ok(counted(
            "get",
            match answer {
                Ok(body) => ShadowAnswer::accepted(body),
                Err(rejection) => ShadowAnswer::refused(&rejection, payload, now),
            },
        ))
    }

    /// `delete`: removes the shadow, keeping its version for the next one.
    pub(crate) async fn delete_shadow(
        &self,
        thing: String,
        name: String,
        payload: Vec<u8>,
    ) -> Result<ShadowAnswer, AwsError> {
        self.change(
            "delete",
            thing,
            name,
            payload,
            |c, thing, name, payload, now| {
                let current: Option<Shadow> = c.get(&shadow_key(thing, name))?;
                Ok(
                    match shadow::delete(current.as_ref(), thing, name, payload, now) {
                        Ok(body) => {
                            let version = current.map_or(0, |s| s.version);
                            c.remove(shadow_key(thing, name));
                            c.put(deleted_key(thing, name), &version)?;
                            (ShadowAnswer::accepted(body), Some((version, None)))
                        }
                        Err(rejection) => (ShadowAnswer::refused(&rejection, payload, now), None),
                    },
                )
            },
        )
        .await
    }

    /// An update or delete: admitted at the thing's rate, `apply`d on the
    /// writer, and once committed handed to the fleet index (as what
    /// `apply` says it left: a version and the shadow, `None` when
    /// deleted), to the end even if the caller stops waiting; counted.
    async fn change<F>(
        &self,
        operation: &'static str,
        thing: String,
        name: String,
        payload: Vec<u8>,
        apply: F,
    ) -> Result<ShadowAnswer, AwsError>
    where
        F: FnOnce(
                &mut Changes<'_>,
                &str,
                &str,
                &[u8],
                i64,
            ) -> Result<(ShadowAnswer, Left), AwsError>
            + Send
            + 'static,
    {
        let now = now_secs();
        if let Err(rejection) = self.admit(&thing, &name) {
            let refused = ShadowAnswer::refused(&rejection, &payload, now);
            return Ok(counted(operation, refused));
        }
        let registry = self.clone();
        let answer = to_the_end(async move {
            let (indexed_thing, indexed_name) = (thing.clone(), name.clone());
            let (answer, left) = registry
                .writer
                .mutate(move |c| apply(c, &thing, &name, &payload, now))
                .await?;
            if let Some((version, shadow)) = left {
                registry
                    .index
                    .put_shadow(&indexed_thing, &indexed_name, version, shadow);
            }
            Ok(answer)
        })
        .await?;
        Ok(counted(operation, answer))
    }

    /// The names of a thing's named shadows, in name order.
    pub(crate) fn list_named_shadows(
        &self,
        thing: &str,
        page: &Page,
    ) -> Result<Paged<String>, AwsError> {
        let names = self.store.keys(&prefix(&["shadow", thing]))?;
        Ok(page.collect_sorted(names.into_iter().filter(|n| !n.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_thing_gets_its_rate_in_bursts_and_no_more() {
        let rate = ThingRate::new(20);
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| rate.admit("lamp", t0)).count(), 20);
        // Another thing has its own bucket.
        assert!(rate.admit("fan", t0));
        // Refilled at 20 a second.
        let later = t0 + Duration::from_millis(100);
        assert_eq!((0..5).filter(|_| rate.admit("lamp", later)).count(), 2);
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..30).filter(|_| rate.admit("lamp", much_later)).count(),
            20
        );
        let unlimited = ThingRate::new(0);
        assert!((0..1000).all(|_| unlimited.admit("lamp", t0)));
    }

    #[test]
    fn full_buckets_are_forgotten_when_many_things_are_tracked() {
        let rate = ThingRate::new(20);
        let t0 = Instant::now();
        for i in 0..TRACKED_THINGS {
            assert!(rate.admit(&format!("t{i}"), t0));
        }
        let later = t0 + Duration::from_secs(1);
        assert!(rate.admit("new", later));
        assert_eq!(rate.buckets.lock().unwrap().things.len(), 1);
        // Not again within the second: the map only grows meanwhile.
        for i in 0..10 {
            assert!(rate.admit(&format!("u{i}"), later));
        }
        assert_eq!(rate.buckets.lock().unwrap().things.len(), 11);
    }
}
