//! Failover within a provision: when the broker a logical offering's instance was placed on cannot
//! have received the provision, it goes to the placement's next candidate in the same call.
//!
//! "Cannot have received" is exact: the broker is not admitted (its circuit is open, its outbound
//! rate limit is exhausted, it is not configured), or the connection failed before anything was
//! sent (refused, DNS, TLS handshake). Anything that may have reached the upstream (a timeout after
//! sending, a broken exchange, a 5xx) is never tried elsewhere: the registry's orphan mitigation
//! handles it, as for any provision. Each move is noted for the audit record with its reason, and
//! a fresh intent is moved in the registry before the next broker is called.

use std::collections::VecDeque;

use osb_routing::RoutingError;

use super::call::{Admitted, OsbCall};
use super::decide::Decision;
use crate::error::ApiError;
use crate::telemetry::audit;

/// Where a provision is sent: a broker and the upstream ids it knows the plan by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub broker: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
}

/// The candidates left to try, in order.
#[derive(Debug)]
pub struct Failover {
    left: VecDeque<Target>,
}

/// `true` when `error` says nothing was sent to the broker.
pub fn nothing_sent(error: &RoutingError) -> bool {
    matches!(
        error,
        RoutingError::UpstreamUnreachable { .. }
            | RoutingError::UpstreamTls { .. }
            | RoutingError::CircuitOpen { .. }
    )
}

/// `true` when admitting the broker was refused without anything sent to it.
fn not_admitted(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::CircuitOpen { .. } | ApiError::RateLimited { .. } | ApiError::UpstreamUnavailable { .. }
    )
}

impl Failover {
    /// The decision's broker, and the candidates after it.
    pub fn of(decision: &Decision) -> (Target, Failover) {
        let first = Target {
            broker: decision.broker.clone(),
            upstream_service_id: decision.upstream_service_id.clone(),
            upstream_plan_id: decision.upstream_plan_id.clone(),
        };
        let left = decision
            .failover
            .iter()
            .map(|f| Target {
                broker: f.broker.clone(),
                upstream_service_id: f.upstream_service_id.clone(),
                upstream_plan_id: f.upstream_plan_id.clone(),
            })
            .collect();
        (first, Failover { left })
    }

    /// Admits `target`, or the first candidate after it whose broker admits the call.
    ///
    /// # Errors
    /// The last broker's refusal when none admits it.
    pub fn admit(
        &mut self,
        call: &OsbCall,
        mut target: Target,
        service_id: &str,
        plan_id: &str,
    ) -> Result<(Target, Admitted), ApiError> {
        loop {
            match call.admit(&target.broker, service_id, plan_id) {
                Ok(admitted) => return Ok((target, admitted)),
                Err(refused) if not_admitted(&refused) => match self.left.pop_front() {
                    Some(next) => {
                        audit::note_failover(call.request(), &target.broker, &next.broker, refused.code());
                        target = next;
                    }
                    None => return Err(refused),
                },
                Err(refused) => return Err(refused),
            }
        }
    }

    /// After `failed` from `target`'s broker: the next candidate that admits the call, when
    /// nothing was sent and one is left.
    pub fn after(
        &mut self,
        call: &OsbCall,
        target: &Target,
        failed: &RoutingError,
        service_id: &str,
        plan_id: &str,
    ) -> Option<(Target, Admitted)> {
        if !nothing_sent(failed) {
            return None;
        }
        let next = self.left.pop_front()?;
        audit::note_failover(call.request(), &target.broker, &next.broker, failed.kind());
        self.admit(call, next, service_id, plan_id).ok()
    }
}
