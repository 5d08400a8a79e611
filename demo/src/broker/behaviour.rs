//! How a demo broker answers ([`Behaviour`], [`Answers`]) and the kinds of call it counts
//! ([`Endpoint`]).

use std::time::Duration;

/// What a [`DemoBroker`](super::DemoBroker) does with instance and binding calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// Checks every call and keeps instances, bindings and operations in memory.
    Stateful,
    /// Fixed answers without parsing the body; keeps only counters and the polls owed.
    Fast,
    /// Only scripted replies ([`DemoBroker::on`](super::DemoBroker::on)); every other request is
    /// a 404 `not scripted`, without any check.
    Script,
}

/// How a [`DemoBroker`](super::DemoBroker) answers instance and binding calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Added to every instance and binding call (not to the catalog), after the state changed.
    pub latency: Duration,
    /// Answer 202 with an `operation` when the call has `accepts_incomplete=true` (provision,
    /// update, deprovision, bind, unbind). Without `accepts_incomplete` calls stay synchronous.
    pub async_operations: bool,
    /// `last_operation` answers "in progress" this many times, then "succeeded".
    pub async_polls: u32,
    /// actix worker threads.
    pub workers: usize,
    /// Share (0.0–1.0) of instance and binding calls, polls excepted, answered 500 after the
    /// request was read, evenly spread (a low-discrepancy sequence), and without effect.
    pub error_rate: f64,
    /// What the instance and binding calls do.
    pub answers: Answers,
    /// Keep every request received, whole ([`DemoBroker::recorded`](super::DemoBroker::recorded)).
    pub record: bool,
}

impl Default for Behaviour {
    /// Stateful, no latency, synchronous, one poll, one worker, no failures, no record.
    fn default() -> Self {
        Behaviour {
            latency: Duration::ZERO,
            async_operations: false,
            async_polls: 1,
            workers: 1,
            error_rate: 0.0,
            answers: Answers::Stateful,
            record: false,
        }
    }
}

impl Behaviour {
    /// A stateful upstream for benchmarks: synchronous, no latency, one worker per available core.
    pub fn fast() -> Self {
        Behaviour {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            ..Behaviour::default()
        }
    }

    /// The load tests' stub: [`Answers::Fast`], synchronous, no latency, one worker.
    pub fn counting() -> Self {
        Behaviour {
            answers: Answers::Fast,
            ..Behaviour::default()
        }
    }

    /// The fault tests' upstream: [`Answers::Script`], recording every request.
    pub fn scripted() -> Self {
        Behaviour {
            answers: Answers::Script,
            record: true,
            ..Behaviour::default()
        }
    }

    /// Async operations (when the platform accepts them) that finish after `polls` "in progress"
    /// answers.
    pub fn asynchronous(polls: u32) -> Self {
        Behaviour {
            async_operations: true,
            async_polls: polls,
            ..Behaviour::default()
        }
    }

    /// The same, with `latency` added to every instance and binding call.
    #[must_use]
    pub fn with_latency(self, latency: Duration) -> Self {
        Behaviour { latency, ..self }
    }

    /// The same, on `workers` worker threads (at least one).
    #[must_use]
    pub fn with_workers(self, workers: usize) -> Self {
        Behaviour { workers, ..self }
    }

    /// The same, failing `error_rate` (0.0–1.0) of the instance and binding calls.
    #[must_use]
    pub fn with_error_rate(self, error_rate: f64) -> Self {
        Behaviour { error_rate, ..self }
    }
}

/// The kinds of call a [`DemoBroker`](super::DemoBroker) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Catalog,
    Provision,
    Update,
    Deprovision,
    FetchInstance,
    InstanceLastOperation,
    Bind,
    Unbind,
    FetchBinding,
    BindingLastOperation,
}

impl Endpoint {
    /// Every kind, in declaration order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Catalog,
        Endpoint::Provision,
        Endpoint::Update,
        Endpoint::Deprovision,
        Endpoint::FetchInstance,
        Endpoint::InstanceLastOperation,
        Endpoint::Bind,
        Endpoint::Unbind,
        Endpoint::FetchBinding,
        Endpoint::BindingLastOperation,
    ];

    /// The OSB name of the call: `provision`, `instance_last_operation`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Catalog => "catalog",
            Endpoint::Provision => "provision",
            Endpoint::Update => "update",
            Endpoint::Deprovision => "deprovision",
            Endpoint::FetchInstance => "fetch_instance",
            Endpoint::InstanceLastOperation => "instance_last_operation",
            Endpoint::Bind => "bind",
            Endpoint::Unbind => "unbind",
            Endpoint::FetchBinding => "fetch_binding",
            Endpoint::BindingLastOperation => "binding_last_operation",
        }
    }

    pub(super) fn is_poll(self) -> bool {
        matches!(
            self,
            Endpoint::InstanceLastOperation | Endpoint::BindingLastOperation
        )
    }
}
