//! [`Answers::Fast`](super::Answers::Fast): fixed answers for benchmarks, the least work per call.
//!
//! No body is parsed and nothing is recorded: provision and bind answer 201 (a bind carries
//! credentials), update 200, unbind and deprovision 200 `{}`, fetches 200; with async operations a
//! call with `accepts_incomplete=true` answers 202 and `last_operation` says "in progress" the
//! configured number of times, then "succeeded". What is kept: instances and bindings created minus
//! deleted (so a run can check that nothing leaked) and the polls still owed per resource id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use actix_web::http::StatusCode;
use bytes::Bytes;

use super::Endpoint;
use super::resources::Reply;

/// Polls still owed per resource id, sharded to keep the locks short.
struct Operations {
    shards: Vec<Mutex<HashMap<String, u32>>>,
}

impl Operations {
    fn new() -> Self {
        Operations {
            shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> Option<&Mutex<HashMap<String, u32>>> {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.shards.get((hash % self.shards.len() as u64) as usize)
    }

    fn start(&self, id: &str, polls: u32) {
        if let Some(shard) = self.shard(id) {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.to_owned(), polls);
        }
    }

    /// `true` while the operation is still in progress (one poll is spent).
    fn poll(&self, id: &str) -> bool {
        let Some(shard) = self.shard(id) else {
            return false;
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            Some(_) => {
                map.remove(id);
                false
            }
            None => false,
        }
    }
}

/// What a fast broker keeps.
pub(super) struct Counters {
    instances: AtomicI64,
    bindings: AtomicI64,
    operations: Operations,
}

impl Counters {
    pub fn new() -> Self {
        Counters {
            instances: AtomicI64::new(0),
            bindings: AtomicI64::new(0),
            operations: Operations::new(),
        }
    }

    /// Instances and bindings created minus deleted.
    pub fn balance(&self) -> (i64, i64) {
        (
            self.instances.load(Ordering::Relaxed),
            self.bindings.load(Ordering::Relaxed),
        )
    }

    /// The answer to an instance or binding call on `id` (the instance's, or the binding's);
    /// `deferred`: answer 202 and owe `polls` "in progress".
    pub fn reply(&self, endpoint: Endpoint, id: &str, deferred: bool, polls: u32) -> Reply {
        let start = |body: &'static [u8]| {
            self.operations.start(id, polls);
            fixed(StatusCode::ACCEPTED, body)
        };
        match endpoint {
            Endpoint::Provision => {
                self.instances.fetch_add(1, Ordering::Relaxed);
                if deferred {
                    start(b"{\"operation\":\"provisioning\"}")
                } else {
                    fixed(
                        StatusCode::CREATED,
                        b"{\"dashboard_url\":\"http://stub.invalid/dashboard\"}",
                    )
                }
            }
            Endpoint::Update if deferred => start(b"{\"operation\":\"updating\"}"),
            Endpoint::Update => fixed(StatusCode::OK, b"{}"),
            Endpoint::Deprovision => {
                self.instances.fetch_sub(1, Ordering::Relaxed);
                if deferred {
                    start(b"{\"operation\":\"deprovisioning\"}")
                } else {
                    fixed(StatusCode::OK, b"{}")
                }
            }
            Endpoint::FetchInstance => fixed(StatusCode::OK, b"{\"parameters\":{}}"),
            Endpoint::Bind => {
                self.bindings.fetch_add(1, Ordering::Relaxed);
                if deferred {
                    start(b"{\"operation\":\"binding\"}")
                } else {
                    fixed(StatusCode::CREATED, CREDENTIALS)
                }
            }
            Endpoint::Unbind => {
                self.bindings.fetch_sub(1, Ordering::Relaxed);
                if deferred {
                    start(b"{\"operation\":\"unbinding\"}")
                } else {
                    fixed(StatusCode::OK, b"{}")
                }
            }
            Endpoint::FetchBinding => fixed(StatusCode::OK, CREDENTIALS),
            Endpoint::InstanceLastOperation | Endpoint::BindingLastOperation => {
                if self.operations.poll(id) {
                    fixed(StatusCode::OK, b"{\"state\":\"in progress\"}")
                } else {
                    fixed(StatusCode::OK, b"{\"state\":\"succeeded\"}")
                }
            }
            Endpoint::Catalog => fixed(StatusCode::NOT_FOUND, b"{\"description\":\"no such endpoint\"}"),
        }
    }
}

const CREDENTIALS: &[u8] = b"{\"credentials\":{\"uri\":\"stub://user:secret@stub.invalid/queue\"}}";

fn fixed(status: StatusCode, body: &'static [u8]) -> Reply {
    Reply {
        status,
        body: Bytes::from_static(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_count_down() {
        let ops = Operations::new();
        ops.start("x", 2);
        assert!(ops.poll("x"));
        assert!(ops.poll("x"));
        assert!(!ops.poll("x"));
        assert!(!ops.poll("never-started"));
    }

    #[test]
    fn counters_balance_creates_and_deletes() {
        let counters = Counters::new();
        for endpoint in [Endpoint::Provision, Endpoint::Bind, Endpoint::Provision] {
            counters.reply(endpoint, "i", false, 0);
        }
        counters.reply(Endpoint::Unbind, "b", true, 1);
        assert_eq!(counters.balance(), (2, 0));
        let polled = counters.reply(Endpoint::BindingLastOperation, "b", false, 0);
        assert_eq!(&polled.body[..], b"{\"state\":\"in progress\"}");
    }
}
