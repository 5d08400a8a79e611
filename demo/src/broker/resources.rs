//! The demo broker's memory: its instances, their bindings and the async operations on both, as an
//! OSB state machine without HTTP.
//!
//! The parent module checks auth, headers and the catalog, takes the lock, calls one method here and sends
//! the [`Reply`] it gets back. Every method is synchronous, so the lock is never held across an
//! `.await`. Operations advance only when polled: `last_operation` answers "in progress" the
//! configured number of times, then "succeeded" (and an async deprovision or unbind then removes its
//! resource, after which `last_operation` answers 410). Nothing here sleeps, reads a clock or fails.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

pub(super) use super::reply::Reply;
use super::reply::{OperationKind, Progress};

/// The last async operation on an instance or binding, kept after it finished so that
/// `last_operation` can still answer for it.
#[derive(Debug)]
struct Operation {
    kind: OperationKind,
    /// `"{kind} {sequence}/{resource id}"`: the space and slash make platforms percent-encode it.
    id: String,
    polls_left: u32,
    finished: bool,
}

impl Operation {
    fn is_running(&self, kind: OperationKind) -> bool {
        !self.finished && self.kind == kind
    }

    /// One `last_operation` call: counts down, then finishes.
    fn poll(&mut self) -> Progress {
        if self.finished {
            Progress::Succeeded
        } else if let Some(left) = self.polls_left.checked_sub(1) {
            self.polls_left = left;
            Progress::InProgress
        } else {
            self.finished = true;
            Progress::Succeeded
        }
    }
}

/// The running operation of `kind` on a resource, if any.
fn running(operation: Option<&Operation>, kind: OperationKind) -> Option<&Operation> {
    operation.filter(|op| op.is_running(kind))
}

/// The fields of a provision (or bind) that decide whether a re-sent PUT is identical.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Attributes {
    pub service_id: String,
    pub plan_id: String,
    /// `{}` when the request had none, so that "absent" and "empty" compare equal.
    pub parameters: Value,
}

impl Attributes {
    fn matches(&self, other: &Attributes) -> bool {
        self == other
    }
}

/// A PATCH: the service it names and what it changes.
#[derive(Debug)]
pub(super) struct Update {
    pub service_id: String,
    pub plan_id: Option<String>,
    pub parameters: Option<Value>,
}

#[derive(Debug)]
struct Instance {
    attributes: Attributes,
    operation: Option<Operation>,
    bindings: HashMap<String, Binding>,
}

impl Instance {
    fn running(&self, kind: OperationKind) -> Option<&Operation> {
        running(self.operation.as_ref(), kind)
    }

    fn is_busy(&self) -> bool {
        self.operation.as_ref().is_some_and(|op| !op.finished)
    }
}

#[derive(Debug)]
struct Binding {
    attributes: Attributes,
    credentials: Credentials,
    operation: Option<Operation>,
}

impl Binding {
    fn running(&self, kind: OperationKind) -> Option<&Operation> {
        running(self.operation.as_ref(), kind)
    }
}

#[derive(Debug, Serialize)]
struct Credentials {
    uri: String,
    username: String,
    password: String,
}

#[derive(Serialize)]
struct CredentialsBody<'a> {
    credentials: &'a Credentials,
}

/// All instances and bindings of one demo broker.
#[derive(Debug)]
pub(super) struct Resources {
    instances: HashMap<String, Instance>,
    /// Operations started so far; numbers the next operation id.
    operations: u64,
    /// How many times `last_operation` answers "in progress" before "succeeded".
    polls: u32,
    /// The `username` in every binding's credentials.
    username: String,
}

impl Resources {
    pub fn new(polls: u32, username: String) -> Self {
        Resources {
            instances: HashMap::new(),
            operations: 0,
            polls,
            username,
        }
    }

    /// Ids of the instances that exist (provisioned or being provisioned, not yet deleted), sorted.
    pub fn instance_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.instances.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    /// (instance id, binding id) of every binding that exists, sorted.
    pub fn binding_ids(&self) -> Vec<(String, String)> {
        let mut ids: Vec<(String, String)> = self
            .instances
            .iter()
            .flat_map(|(iid, instance)| {
                instance
                    .bindings
                    .keys()
                    .map(move |bid| (iid.clone(), bid.clone()))
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    fn start(operations: &mut u64, polls: u32, kind: OperationKind, resource_id: &str) -> Operation {
        *operations = operations.wrapping_add(1);
        Operation {
            kind,
            id: format!("{} {}/{resource_id}", kind.name(), operations),
            polls_left: polls,
            finished: false,
        }
    }

    // === instances ===

    /// PUT /v2/service_instances/{instance_id}. `attributes` name a plan of the catalog.
    pub fn provision(&mut self, instance_id: &str, attributes: Attributes, asynchronous: bool) -> Reply {
        if let Some(existing) = self.instances.get(instance_id) {
            if existing.running(OperationKind::Deprovision).is_some() {
                return Reply::concurrency(format!("instance {instance_id} is being deprovisioned"));
            }
            if !existing.attributes.matches(&attributes) {
                return Reply::empty(StatusCode::CONFLICT);
            }
            return match existing.running(OperationKind::Provision) {
                Some(op) => Reply::accepted(&op.id),
                None => Reply::empty(StatusCode::OK),
            };
        }
        let operation = asynchronous.then(|| {
            Self::start(
                &mut self.operations,
                self.polls,
                OperationKind::Provision,
                instance_id,
            )
        });
        let reply = match &operation {
            Some(op) => Reply::accepted(&op.id),
            None => Reply::empty(StatusCode::CREATED),
        };
        self.instances.insert(
            instance_id.to_owned(),
            Instance {
                attributes,
                operation,
                bindings: HashMap::new(),
            },
        );
        reply
    }

    /// PATCH /v2/service_instances/{instance_id}. The new plan, if any, belongs to the service.
    /// The change is stored at once; an async update only reports progress.
    pub fn update(&mut self, instance_id: &str, update: Update, asynchronous: bool) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::bad_request("instance does not exist".to_owned());
        };
        if instance.attributes.service_id != update.service_id {
            return Reply::bad_request(format!(
                "service_id {} is not the service of instance {instance_id}",
                update.service_id
            ));
        }
        if instance.is_busy() {
            return Reply::concurrency(format!("instance {instance_id} has an operation in progress"));
        }
        if let Some(plan_id) = update.plan_id {
            instance.attributes.plan_id = plan_id;
        }
        if let Some(parameters) = update.parameters {
            instance.attributes.parameters = parameters;
        }
        if asynchronous {
            let op = Self::start(
                &mut self.operations,
                self.polls,
                OperationKind::Update,
                instance_id,
            );
            let reply = Reply::accepted(&op.id);
            instance.operation = Some(op);
            reply
        } else {
            Reply::empty(StatusCode::OK)
        }
    }

    /// DELETE /v2/service_instances/{instance_id}. Supersedes a running provision or update; drops
    /// the instance's bindings with it.
    pub fn deprovision(&mut self, instance_id: &str, asynchronous: bool) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        if let Some(op) = instance.running(OperationKind::Deprovision) {
            return Reply::accepted(&op.id);
        }
        if asynchronous {
            let op = Self::start(
                &mut self.operations,
                self.polls,
                OperationKind::Deprovision,
                instance_id,
            );
            let reply = Reply::accepted(&op.id);
            instance.operation = Some(op);
            reply
        } else {
            self.instances.remove(instance_id);
            Reply::empty(StatusCode::OK)
        }
    }

    /// GET /v2/service_instances/{instance_id}: 404 while provisioning.
    pub fn fetch_instance(&self, instance_id: &str) -> Reply {
        match self.instances.get(instance_id) {
            Some(instance) if instance.running(OperationKind::Provision).is_none() => {
                Reply::json(StatusCode::OK, &FetchBody::from(&instance.attributes))
            }
            Some(_) => Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id} is being provisioned"),
            ),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id} does not exist"),
            ),
        }
    }

    /// GET /v2/service_instances/{instance_id}/last_operation[?operation=...]; `operation` is
    /// already percent-decoded.
    pub fn instance_last_operation(&mut self, instance_id: &str, operation: Option<&str>) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        let polled = poll(instance.operation.as_mut(), operation, OperationKind::Provision);
        let (progress, kind) = match polled {
            Ok(polled) => polled,
            Err(reply) => return reply,
        };
        if progress == Progress::Succeeded && kind == OperationKind::Deprovision {
            self.instances.remove(instance_id);
        }
        Reply::last_operation(progress, kind)
    }

    // === bindings ===

    /// PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}.
    pub fn bind(
        &mut self,
        instance_id: &str,
        binding_id: &str,
        attributes: Attributes,
        asynchronous: bool,
    ) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::bad_request(format!("instance {instance_id} does not exist"));
        };
        if let Some(op) = instance
            .running(OperationKind::Provision)
            .or_else(|| instance.running(OperationKind::Deprovision))
        {
            return Reply::concurrency(format!("instance {instance_id} is {}", op.kind.in_progress()));
        }
        if let Some(existing) = instance.bindings.get(binding_id) {
            if existing.running(OperationKind::Unbind).is_some() {
                return Reply::concurrency(format!("binding {binding_id} is being unbound"));
            }
            if !existing.attributes.matches(&attributes) {
                return Reply::empty(StatusCode::CONFLICT);
            }
            return match existing.running(OperationKind::Bind) {
                Some(op) => Reply::accepted(&op.id),
                None => Reply::json(
                    StatusCode::OK,
                    &CredentialsBody {
                        credentials: &existing.credentials,
                    },
                ),
            };
        }
        let credentials = Credentials {
            uri: format!("demo://{binding_id}"),
            username: self.username.clone(),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        let operation = asynchronous
            .then(|| Self::start(&mut self.operations, self.polls, OperationKind::Bind, binding_id));
        let reply = match &operation {
            Some(op) => Reply::accepted(&op.id),
            None => Reply::json(
                StatusCode::CREATED,
                &CredentialsBody {
                    credentials: &credentials,
                },
            ),
        };
        instance.bindings.insert(
            binding_id.to_owned(),
            Binding {
                attributes,
                credentials,
                operation,
            },
        );
        reply
    }

    /// DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}. Supersedes a
    /// running bind.
    pub fn unbind(&mut self, instance_id: &str, binding_id: &str, asynchronous: bool) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        let Some(binding) = instance.bindings.get_mut(binding_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        if let Some(op) = binding.running(OperationKind::Unbind) {
            return Reply::accepted(&op.id);
        }
        if asynchronous {
            let op = Self::start(
                &mut self.operations,
                self.polls,
                OperationKind::Unbind,
                binding_id,
            );
            let reply = Reply::accepted(&op.id);
            binding.operation = Some(op);
            reply
        } else {
            instance.bindings.remove(binding_id);
            Reply::empty(StatusCode::OK)
        }
    }

    /// GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}: 404 while binding.
    pub fn fetch_binding(&self, instance_id: &str, binding_id: &str) -> Reply {
        #[derive(Serialize)]
        struct FetchBindingBody<'a> {
            credentials: &'a Credentials,
            parameters: &'a Value,
        }
        let binding = self
            .instances
            .get(instance_id)
            .and_then(|instance| instance.bindings.get(binding_id));
        match binding {
            Some(binding) if binding.running(OperationKind::Bind).is_none() => Reply::json(
                StatusCode::OK,
                &FetchBindingBody {
                    credentials: &binding.credentials,
                    parameters: &binding.attributes.parameters,
                },
            ),
            Some(_) => Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("binding {binding_id} is being created"),
            ),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("binding {binding_id} of instance {instance_id} does not exist"),
            ),
        }
    }

    /// GET …/service_bindings/{binding_id}/last_operation[?operation=...].
    pub fn binding_last_operation(
        &mut self,
        instance_id: &str,
        binding_id: &str,
        operation: Option<&str>,
    ) -> Reply {
        let Some(instance) = self.instances.get_mut(instance_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        let Some(binding) = instance.bindings.get_mut(binding_id) else {
            return Reply::empty(StatusCode::GONE);
        };
        let polled = poll(binding.operation.as_mut(), operation, OperationKind::Bind);
        let (progress, kind) = match polled {
            Ok(polled) => polled,
            Err(reply) => return reply,
        };
        if progress == Progress::Succeeded && kind == OperationKind::Unbind {
            instance.bindings.remove(binding_id);
        }
        Reply::last_operation(progress, kind)
    }
}

/// Polls the resource's last operation; a resource that only saw synchronous calls has none and
/// reports its `creation` as done. An `operation` that names another operation is a 400.
fn poll(
    current: Option<&mut Operation>,
    wanted: Option<&str>,
    creation: OperationKind,
) -> Result<(Progress, OperationKind), Reply> {
    match (current, wanted) {
        (Some(op), Some(wanted)) if op.id != wanted => Err(unknown_operation(wanted)),
        (Some(op), _) => Ok((op.poll(), op.kind)),
        (None, Some(wanted)) => Err(unknown_operation(wanted)),
        (None, None) => Ok((Progress::Succeeded, creation)),
    }
}

fn unknown_operation(operation: &str) -> Reply {
    Reply::bad_request(format!("unknown operation {operation:?}"))
}

/// Body of a fetched instance.
#[derive(Serialize)]
struct FetchBody<'a> {
    service_id: &'a str,
    plan_id: &'a str,
    parameters: &'a Value,
}

impl<'a> From<&'a Attributes> for FetchBody<'a> {
    fn from(attributes: &'a Attributes) -> Self {
        FetchBody {
            service_id: &attributes.service_id,
            plan_id: &attributes.plan_id,
            parameters: &attributes.parameters,
        }
    }
}
