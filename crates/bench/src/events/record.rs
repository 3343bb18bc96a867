//! What a phase recorded, lock-free: per thing, when its CreateThing was
//! acknowledged, and per subscriber and thing, when its `created` event
//! arrived; then the latencies and the losses computed from them.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Every thing a phase creates is named `PREFIX<phase>-<seq>`.
pub(super) const PREFIX: &str = "bench-ev-";
/// Things created to see that every subscriber gets events: `PROBE<n>`.
pub(super) const PROBE: &str = "bench-probe-";
/// The subscribers' filter.
pub(super) const FILTER: &str = "$aws/events/thing/+/created";

/// The thing named in a `$aws/events/thing/<name>/created` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Named {
    Probe,
    /// (phase, seq)
    Thing(usize, usize),
}

pub(super) fn thing_name(phase: usize, seq: usize) -> String {
    format!("{PREFIX}{phase}-{seq}")
}

/// Which bench thing a `created` topic names, if any.
pub(super) fn parse_topic(topic: &str) -> Option<Named> {
    let name = topic
        .strip_prefix("$aws/events/thing/")?
        .strip_suffix("/created")?;
    if name.starts_with(PROBE) {
        return Some(Named::Probe);
    }
    let (phase, seq) = name.strip_prefix(PREFIX)?.split_once('-')?;
    Some(Named::Thing(phase.parse().ok()?, seq.parse().ok()?))
}

/// One phase: `things` mutations, `subscribers` subscribers. Instants are
/// nanoseconds since the run's base, plus one (0: not yet).
pub(super) struct PhaseRecord {
    things: usize,
    subscribers: usize,
    acks: Box<[AtomicU64]>,
    /// `received[subscriber * things + seq]`.
    received: Box<[AtomicU64]>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

fn zeros(len: usize) -> Box<[AtomicU64]> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

impl PhaseRecord {
    pub(super) fn new(things: usize, subscribers: usize) -> PhaseRecord {
        PhaseRecord {
            things,
            subscribers,
            acks: zeros(things),
            received: zeros(things * subscribers),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    pub(super) fn things(&self) -> usize {
        self.things
    }

    pub(super) fn ack(&self, seq: usize, at: u64) {
        if let Some(slot) = self.acks.get(seq) {
            slot.store(at.max(1), Ordering::Relaxed);
        }
    }

    /// The first delivery of `seq` to `subscriber` counts; later ones are duplicates.
    pub(super) fn receive(&self, subscriber: usize, seq: usize, at: u64) {
        if seq >= self.things || subscriber >= self.subscribers {
            return;
        }
        let slot = &self.received[subscriber * self.things + seq];
        if slot
            .compare_exchange(0, at.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub(super) fn acked(&self) -> u64 {
        self.acks
            .iter()
            .filter(|slot| slot.load(Ordering::Relaxed) != 0)
            .count() as u64
    }

    /// Latencies (receive − ack; negatives clamped to zero and counted as
    /// early) and losses (an acknowledged thing's event missing at a subscriber).
    pub(super) fn analyse(&self) -> Analysis {
        let mut analysis = Analysis {
            duplicates: self.duplicates.load(Ordering::Relaxed),
            ..Analysis::default()
        };
        for (seq, ack) in self.acks.iter().enumerate() {
            let ack = ack.load(Ordering::Relaxed);
            if ack == 0 {
                continue;
            }
            analysis.acked += 1;
            for subscriber in 0..self.subscribers {
                let received =
                    self.received[subscriber * self.things + seq].load(Ordering::Relaxed);
                if received == 0 {
                    analysis.lost += 1;
                } else if received < ack {
                    analysis.early += 1;
                    analysis.latencies.push(Duration::ZERO);
                } else {
                    analysis
                        .latencies
                        .push(Duration::from_nanos(received - ack));
                }
            }
        }
        analysis
    }
}

#[derive(Debug, Default)]
pub(super) struct Analysis {
    pub(super) acked: u64,
    /// (acknowledged thing, subscriber) pairs with no event.
    pub(super) lost: u64,
    /// Events received before the acknowledgement was seen.
    pub(super) early: u64,
    pub(super) duplicates: u64,
    pub(super) latencies: Vec<Duration>,
}

/// What the subscribers and the driver share.
pub(super) struct Records {
    pub(super) base: Instant,
    /// One slot per phase, set before the phase starts.
    pub(super) phases: Vec<OnceLock<PhaseRecord>>,
    /// Per subscriber: has it received a probe's event?
    pub(super) probed: Box<[AtomicBool]>,
}

impl Records {
    pub(super) fn new(phases: usize, subscribers: usize) -> Records {
        Records {
            base: Instant::now(),
            phases: (0..phases).map(|_| OnceLock::new()).collect(),
            probed: (0..subscribers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Now, as a recorded instant.
    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    pub(super) fn on_event(&self, subscriber: usize, topic: &str) {
        match parse_topic(topic) {
            Some(Named::Probe) => {
                if let Some(flag) = self.probed.get(subscriber) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            Some(Named::Thing(phase, seq)) => {
                if let Some(record) = self.phases.get(phase).and_then(OnceLock::get) {
                    record.receive(subscriber, seq, self.now());
                }
            }
            None => {}
        }
    }

    pub(super) fn probed(&self) -> usize {
        self.probed
            .iter()
            .filter(|flag| flag.load(Ordering::Relaxed))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_phases_and_probes() {
        let name = thing_name(3, 1200);
        assert_eq!(
            parse_topic(&format!("$aws/events/thing/{name}/created")),
            Some(Named::Thing(3, 1200))
        );
        assert_eq!(
            parse_topic("$aws/events/thing/bench-probe-7/created"),
            Some(Named::Probe)
        );
        assert_eq!(parse_topic("$aws/events/thing/other/created"), None);
        assert_eq!(
            parse_topic(&format!("$aws/events/thing/{name}/deleted")),
            None
        );
        assert_eq!(parse_topic("$aws/events/thing/bench-ev-x-1/created"), None);
    }

    #[test]
    fn analysis_counts_latency_losses_and_early_events() {
        let record = PhaseRecord::new(3, 2);
        record.ack(0, 1_000_000);
        record.ack(1, 2_000_000);
        // Thing 2 was never acknowledged: its events do not count.
        record.receive(0, 0, 3_000_000);
        record.receive(1, 0, 1_500_000);
        record.receive(0, 1, 1_000_000); // before its ack
        record.receive(0, 1, 9_000_000); // a duplicate
        record.receive(1, 2, 5_000_000);
        record.receive(5, 0, 1); // no such subscriber
        let analysis = record.analyse();
        assert_eq!(analysis.acked, 2);
        assert_eq!(analysis.lost, 1); // thing 1 at subscriber 1
        assert_eq!(analysis.early, 1);
        assert_eq!(analysis.duplicates, 1);
        let mut latencies = analysis.latencies;
        latencies.sort();
        assert_eq!(
            latencies,
            [
                Duration::ZERO,
                Duration::from_micros(500),
                Duration::from_millis(2)
            ]
        );
        assert_eq!(record.delivered(), 4);
        assert_eq!(record.acked(), 2);
    }

    #[test]
    fn events_reach_the_phase_they_name() {
        let records = Records::new(2, 2);
        records.phases[1].get_or_init(|| PhaseRecord::new(4, 2));
        records.on_event(
            1,
            &format!("$aws/events/thing/{}/created", thing_name(1, 3)),
        );
        records.on_event(
            1,
            &format!("$aws/events/thing/{}/created", thing_name(0, 0)),
        );
        records.on_event(0, "$aws/events/thing/bench-probe-1/created");
        assert_eq!(records.phases[1].get().unwrap().delivered(), 1);
        assert_eq!(records.probed(), 1);
    }
}
