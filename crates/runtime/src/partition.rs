//! (Account, region) partitions, as the services that keep state serve them.
//!
//! Every resource, event and change log lives in one partition. A gRPC call
//! names its partition in the [`PARTITION_METADATA`] entry
//! (`<account>/<region>`); a call without one is for the service's default
//! partition (its settings' account and region). [`Partitions`] opens each
//! partition once, the first time a call names it (or at start, from what
//! the store holds), with an opener the service provides, and stops them all
//! at shutdown.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tonic::{Request, Status, metadata::MetadataValue};

/// The gRPC metadata entry that names a call's partition: `<account>/<region>`.
pub const PARTITION_METADATA: &str = "x-herald-partition";

/// An (account, region) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub account: String,
    pub region: String,
}

impl Partition {
    /// A partition, if `account` is 12 digits and `region` has an AWS
    /// region name's shape (lowercase letters, digits and `-`).
    pub fn new(account: &str, region: &str) -> Option<Partition> {
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let region_ok = (1..=32).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (account_ok && region_ok).then(|| Partition {
            account: account.to_owned(),
            region: region.to_owned(),
        })
    }

    /// Reads `<account>/<region>`.
    pub fn parse(text: &str) -> Option<Partition> {
        let (account, region) = text.split_once('/')?;
        Partition::new(account, region)
    }

    /// `<account>/<region>`: the metadata value and the store's name for it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.account, self.region)
    }

    /// Names this partition in `request`'s metadata.
    pub fn tag<T>(&self, request: &mut Request<T>) {
        if let Ok(value) = MetadataValue::try_from(self.name()) {
            request.metadata_mut().insert(PARTITION_METADATA, value);
        }
    }

    /// The partition `request` names, if it names one; an entry that is not
    /// `<account>/<region>` is `INVALID_ARGUMENT`.
    pub fn of<T>(request: &Request<T>) -> Result<Option<Partition>, Status> {
        let Some(value) = request.metadata().get(PARTITION_METADATA) else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .and_then(Partition::parse)
            .map(Some)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{PARTITION_METADATA} must be <account (12 digits)>/<region>, not {value:?}"
                ))
            })
    }
}

/// What stops an open partition (its tasks joined after shutdown, its
/// writer flushed), given the grace period.
pub type Stopper =
    Box<dyn FnOnce(Duration) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send>;

/// Opens a partition: the service for it and what stops it. `true` for the
/// default partition.
pub type Opener<T> = Box<dyn Fn(&Partition, bool) -> anyhow::Result<(T, Stopper)> + Send + Sync>;

struct Inner<T> {
    default: Partition,
    opener: Opener<T>,
    open: Mutex<HashMap<Partition, T>>,
    stoppers: Mutex<Vec<Stopper>>,
}

/// A service's open partitions. Cheap to clone.
pub struct Partitions<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Partitions<T> {
    fn clone(&self) -> Self {
        Partitions {
            inner: self.inner.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Clone> Partitions<T> {
    /// Opens `default` and every partition in `existing` (by name, as the
    /// store holds them; names that are not partitions are skipped).
    pub fn open(
        default: Partition,
        existing: impl IntoIterator<Item = String>,
        opener: Opener<T>,
    ) -> anyhow::Result<Partitions<T>> {
        let partitions = Partitions {
            inner: Arc::new(Inner {
                default: default.clone(),
                opener,
                open: Mutex::new(HashMap::new()),
                stoppers: Mutex::new(Vec::new()),
            }),
        };
        partitions.get(&default)?;
        for name in existing {
            if let Some(partition) = Partition::parse(&name) {
                partitions.get(&partition)?;
            }
        }
        Ok(partitions)
    }

    /// The default partition's service.
    pub fn default_service(&self) -> T {
        lock(&self.inner.open)
            .get(&self.inner.default)
            .cloned()
            .unwrap_or_else(|| unreachable!("the default partition opens at start"))
    }

    /// Every open partition's service.
    pub fn all(&self) -> Vec<T> {
        lock(&self.inner.open).values().cloned().collect()
    }

    /// Every open partition, with its service.
    pub fn all_named(&self) -> Vec<(Partition, T)> {
        lock(&self.inner.open)
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// The partition's service, opened if it is not yet.
    pub fn get(&self, partition: &Partition) -> anyhow::Result<T> {
        let mut open = lock(&self.inner.open);
        if let Some(service) = open.get(partition) {
            return Ok(service.clone());
        }
        let is_default = *partition == self.inner.default;
        let (service, stopper) = (self.inner.opener)(partition, is_default)?;
        lock(&self.inner.stoppers).push(stopper);
        open.insert(partition.clone(), service.clone());
        if !is_default {
            tracing::info!(partition = partition.name(), "partition open");
        }
        Ok(service)
    }

    /// The service of the partition `request` names (the default when it
    /// names none).
    pub fn of<R>(&self, request: &Request<R>) -> Result<T, Status> {
        match Partition::of(request)? {
            None => Ok(self.default_service()),
            Some(partition) => self.get(&partition).map_err(|e| {
                Status::internal(format!("opening partition {}: {e:#}", partition.name()))
            }),
        }
    }

    /// Stops every partition (after shutdown was signalled).
    pub async fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        lock(&self.inner.open).clear();
        let stoppers = std::mem::take(&mut *lock(&self.inner.stoppers));
        for stop in stoppers {
            stop(grace).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_read_and_refuse() {
        let p = Partition::parse("111122223333/eu-west-1").unwrap();
        assert_eq!(p.name(), "111122223333/eu-west-1");
        for bad in [
            "",
            "x",
            "1111/eu-west-1",
            "111122223333/EU",
            "111122223333/a/b",
            "111122223333/",
        ] {
            assert!(Partition::parse(bad).is_none(), "{bad:?}");
        }
        let mut request = Request::new(());
        assert_eq!(Partition::of(&request).unwrap(), None);
        p.tag(&mut request);
        assert_eq!(Partition::of(&request).unwrap(), Some(p));
        request
            .metadata_mut()
            .insert(PARTITION_METADATA, MetadataValue::from_static("nope"));
        assert!(Partition::of(&request).is_err());
    }

    #[tokio::test]
    async fn each_partition_opens_once_and_stops() {
        let opened = Arc::new(Mutex::new(Vec::new()));
        let seen = opened.clone();
        let default = Partition::new("123456789012", "us-east-1").unwrap();
        let partitions: Partitions<String> = Partitions::open(
            default,
            ["111122223333/eu-west-1".to_owned(), "not-one".to_owned()],
            Box::new(move |p, is_default| {
                seen.lock().unwrap().push((p.name(), is_default));
                let stopper: Stopper = Box::new(|_| Box::pin(async { Ok(()) }));
                Ok((p.name(), stopper))
            }),
        )
        .unwrap();
        let tokyo = Partition::new("111122223333", "ap-northeast-1").unwrap();
        assert_eq!(partitions.get(&tokyo).unwrap(), tokyo.name());
        assert_eq!(partitions.get(&tokyo).unwrap(), tokyo.name());
        assert_eq!(partitions.default_service(), "123456789012/us-east-1");
        assert_eq!(
            *opened.lock().unwrap(),
            [
                ("123456789012/us-east-1".to_owned(), true),
                ("111122223333/eu-west-1".to_owned(), false),
                ("111122223333/ap-northeast-1".to_owned(), false),
            ]
        );
        assert_eq!(partitions.all().len(), 3);
        partitions.stop(Duration::from_secs(1)).await.unwrap();
        assert!(partitions.all().is_empty());
    }
}
