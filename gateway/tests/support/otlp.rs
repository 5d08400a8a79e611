//! [`OtlpReceiver`]: a real OTLP/HTTP trace receiver for tests. It accepts
//! `POST /v1/traces` (protobuf), decodes the `ExportTraceServiceRequest` with the OpenTelemetry
//! protocol types, and keeps every span with its service name. [`OtlpReceiver::start_tls`] puts
//! an https front before it (rustls; a private CA's certificate, optionally a client certificate
//! required), as a collector behind TLS is.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::certs::CertFiles;

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

    /// An https front for the receiver on a port of its own: TLS with `server`'s certificate,
    /// requiring a client certificate signed by `client_ca` when given; the bytes inside go to
    /// the receiver. Returns the front's `https://` endpoint.
    pub fn start_tls(&self, server: &CertFiles, client_ca: Option<&Path>) -> String {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = CertificateDer::pem_file_iter(&server.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let front = listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let receiver = self.addr;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake (untrusted client) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut inner) = tokio::net::TcpStream::connect(receiver).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
                });
            }
        });
        format!("https://{front}")
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
