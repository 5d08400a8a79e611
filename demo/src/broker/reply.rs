//! What the demo broker answers: a status and a JSON body ([`Reply`]), and the kinds of async
//! operation it reports on ([`OperationKind`], [`Progress`]).

use actix_web::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

/// Status and JSON body of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    /// `{}` with `status`.
    pub fn empty(status: StatusCode) -> Self {
        Reply {
            status,
            body: Bytes::from_static(b"{}"),
        }
    }

    /// `body` serialised with `status`.
    pub fn json(status: StatusCode, body: &impl Serialize) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => Reply {
                status,
                body: Bytes::from(bytes),
            },
            Err(e) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                format!("cannot serialise the answer: {e}"),
            ),
        }
    }

    /// An OSB error body: `{"error": code, "description": description}`.
    pub fn error(status: StatusCode, code: Option<&'static str>, description: String) -> Self {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            description: &'a str,
        }
        let body = ErrorBody {
            error: code,
            description: &description,
        };
        // Serialising two strings cannot fail; fall back to a fixed body all the same.
        let body = serde_json::to_vec(&body).map_or_else(
            |_| Bytes::from_static(b"{\"description\":\"error\"}"),
            Bytes::from,
        );
        Reply { status, body }
    }

    /// 400 with `description`.
    pub fn bad_request(description: String) -> Self {
        Reply::error(StatusCode::BAD_REQUEST, None, description)
    }

    /// 422 `ConcurrencyError`: another operation on the resource is still running.
    pub(super) fn concurrency(description: String) -> Self {
        Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ConcurrencyError"),
            description,
        )
    }

    /// 202 `{"operation": id}`.
    pub(super) fn accepted(operation: &str) -> Self {
        #[derive(Serialize)]
        struct OperationBody<'a> {
            operation: &'a str,
        }
        Reply::json(StatusCode::ACCEPTED, &OperationBody { operation })
    }

    /// 200 `{"state": ..., "description": ...}`.
    pub(super) fn last_operation(progress: Progress, kind: OperationKind) -> Self {
        #[derive(Serialize)]
        struct LastOperationBody {
            state: &'static str,
            description: &'static str,
        }
        let body = match progress {
            Progress::InProgress => LastOperationBody {
                state: "in progress",
                description: kind.in_progress(),
            },
            Progress::Succeeded => LastOperationBody {
                state: "succeeded",
                description: kind.succeeded(),
            },
        };
        Reply::json(StatusCode::OK, &body)
    }
}

/// What an async operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OperationKind {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

impl OperationKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            OperationKind::Provision => "provision",
            OperationKind::Update => "update",
            OperationKind::Deprovision => "deprovision",
            OperationKind::Bind => "bind",
            OperationKind::Unbind => "unbind",
        }
    }

    pub(super) fn in_progress(self) -> &'static str {
        match self {
            OperationKind::Provision => "provisioning",
            OperationKind::Update => "updating",
            OperationKind::Deprovision => "deprovisioning",
            OperationKind::Bind => "binding",
            OperationKind::Unbind => "unbinding",
        }
    }

    pub(super) fn succeeded(self) -> &'static str {
        match self {
            OperationKind::Provision => "provisioned",
            OperationKind::Update => "updated",
            OperationKind::Deprovision => "deprovisioned",
            OperationKind::Bind => "bound",
            OperationKind::Unbind => "unbound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    InProgress,
    Succeeded,
}
