//! [`OtlpReceiver`]: a real OTLP/HTTP trace receiver for tests. It accepts
//! `POST /v1/traces` (protobuf), decodes the `ExportTraceServiceRequest` with the OpenTelemetry
//! protocol types, and keeps every span with its service name.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A received span, flattened.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// Attributes as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn flatten(service: &str, span: &Span) -> ReceivedSpan {
    ReceivedSpan {
        service: service.to_owned(),
        name: span.name.clone(),
        kind: span.kind,
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: hex(&span.parent_span_id),
        attributes: span
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect(),
    }
}

/// See the module docs.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Raw request bodies, to search for strings that must not be there.
    raw: Arc<Mutex<Vec<u8>>>,
    handle: ServerHandle,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (spans.clone(), raw.clone());
        let server = HttpServer::new(move || {
            let (spans, raw) = (s.clone(), r.clone());
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let (spans, raw) = (spans.clone(), raw.clone());
                    async move {
                        raw.lock().unwrap().extend_from_slice(&body);
                        let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        let mut spans = spans.lock().unwrap();
                        for resource in &request.resource_spans {
                            let service = resource
                                .resource
                                .as_ref()
                                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                                .unwrap_or_default();
                            for scope in &resource.scope_spans {
                                spans.extend(scope.spans.iter().map(|span| flatten(&service, span)));
                            }
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .body(Vec::new())
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        OtlpReceiver {
            addr,
            spans,
            raw,
            handle,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Everything received, as (lossy) text.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
