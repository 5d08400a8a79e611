//! The HTTP servers of the two listeners, and the one answer actix would give without an OSB body.
//!
//! actix-web's `HttpServer` is replaced by what it is made of (actix-server accepting, actix-http
//! speaking HTTP/1.1 to the app) so that each accepted connection can be wrapped in
//! [`OsbAnswers`]. Before a request reaches the app, actix-http answers some requests on its own,
//! with an empty body: a request it cannot parse (400: a non-ASCII path, a bad header, a broken
//! chunked body), a request head too large (431: more than 96 headers, over 128 KiB) and a head
//! too slow (408). A platform must get an OSB error body for every refusal, so the wrapper sees
//! those answers go out and adds one: a write that is exactly a response head with an error status,
//! `content-length: 0` and no `content-type` (which no answer of the app ever is: the app's errors
//! are all JSON) is replaced by the same head with a JSON `{"description": …}` body.
//!
//! One more: a malformed chunked body, which actix-http takes for a broken connection and drops
//! without a word. The wrapper follows the framing of the requests it reads ([`framing`]) and,
//! when the chunked body of a PUT or PATCH is malformed while no answer is owed or on its way (the
//! platform sends one request at a time, as OSB clients do), answers 400 itself and ends the
//! connection. A pipelining platform's connection is left to actix: dropped, as before.
//!
//! Everything else passes through untouched: the checks cost a comparison of the first bytes of
//! each write and a head parse per request.

use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::App;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, ServiceFactory, ServiceRequest, ServiceResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use self::framing::RequestFraming;

mod framing;

/// How one listener is served.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// For actix's worker names and logs.
    pub name: &'static str,
    pub workers: usize,
    /// In-flight requests' grace on stop.
    pub shutdown_grace: Duration,
    /// Time a request head may take to arrive (408 after); also the TLS handshake's limit.
    pub head_timeout: Duration,
    /// HTTPS (see [`super::tls`]); plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves the app `factory` makes (once per worker) on `listener`.
///
/// # Errors
/// The listener cannot be used.
pub fn serve<F, T, B>(listener: TcpListener, settings: &ListenerSettings, factory: F) -> io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let head_timeout = settings.head_timeout;
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    Server::build()
        .workers(settings.workers)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs())
        .listen(settings.name, listener, move || {
            let app = factory()
                .into_factory()
                .map_err(|error: actix_web::Error| error.as_response_error().error_response());
            // (The app reads nothing of this config: no URL generation, no `connection_info`.)
            let http = HttpService::build()
                .client_request_timeout(head_timeout)
                .local_addr(addr)
                .finish(map_config(app, |()| AppConfig::default()));
            let tls = tls.clone();
            fn_service(move |io: TcpStream| {
                let tls = tls.clone();
                async move {
                    // Answers are written whole: no reason to wait for more.
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    let io = match tls {
                        Some(acceptor) => match tokio::time::timeout(head_timeout, acceptor.accept(io)).await
                        {
                            Ok(Ok(stream)) => Connection::Tls(Box::new(stream)),
                            Ok(Err(e)) => return Err(actix_http::error::DispatchError::Io(e)),
                            Err(_) => {
                                return Err(actix_http::error::DispatchError::Io(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "TLS handshake timed out",
                                )));
                            }
                        },
                        None => Connection::Plain(io),
                    };
                    Ok::<_, actix_http::error::DispatchError>((OsbAnswers::new(io), Protocol::Http1, peer))
                }
            })
            .and_then(http)
        })
        .map(actix_server::ServerBuilder::run)
}

/// An accepted connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_flush(cx),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection whose HTTP-layer error answers get an OSB error body (see the module docs).
#[derive(Debug)]
pub struct OsbAnswers<T> {
    inner: T,
    /// An answer being replaced: the new bytes, how many are written, and the length of the
    /// original write to report once all are.
    replacing: Option<(Vec<u8>, usize, usize)>,
    /// The requests read so far, followed for a malformed chunked body.
    framing: RequestFraming,
    /// Something was written since the current request's head was read.
    answered: bool,
    /// No request was read yet.
    first: bool,
    /// When the current request's head was read, every earlier request had an answer going out
    /// (the platform sends one request at a time, as OSB clients do; not when it pipelines).
    alone: bool,
    /// The last write took all it was given: nothing of an answer waits to go out.
    flushed: bool,
    /// A malformed body was found: the 400 to write first (and how much of it is written).
    refusing: Option<(Vec<u8>, usize)>,
    /// The connection is over (the refusal went out): reads see its end, writes go nowhere.
    closed: bool,
}

impl<T> OsbAnswers<T> {
    pub fn new(inner: T) -> Self {
        OsbAnswers {
            inner,
            replacing: None,
            framing: RequestFraming::default(),
            answered: false,
            first: true,
            alone: true,
            flushed: true,
            refusing: None,
            closed: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> OsbAnswers<T> {
    /// Writes the refusal of a malformed body, then ends the connection for actix (end of input).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.answered {
            // actix answered meanwhile: leave it its answer; the body it waits for never comes.
            self.refusing = None;
            self.closed = true;
            return Poll::Ready(Ok(()));
        }
        while let Some((answer, written)) = &mut self.refusing {
            let Some(rest) = answer.get(*written..).filter(|rest| !rest.is_empty()) else {
                self.refusing = None;
                break;
            };
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.refusing = None,
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.closed = true;
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for OsbAnswers<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let fed = this.framing.feed(buf.filled().get(before..).unwrap_or_default());
        if fed.new_requests > 0 {
            // Another request still owed an answer (pipelining): not alone.
            this.alone = fed.new_requests == 1 && (this.answered || this.first);
            this.first = false;
            this.answered = false;
        }
        if let Some((at, reason)) = fed.malformed {
            // Refused only when no other answer is owed or on its way, so the refusal cannot be
            // taken for another request's answer, nor cut into one.
            if this.alone && this.flushed && !this.answered {
                // actix gets the body up to the fault, then the end of the connection; the
                // platform gets a 400 saying what was wrong.
                buf.set_filled(before + at);
                this.refusing = Some((malformed_body_answer(reason), 0));
                if at == 0 {
                    return this.poll_refuse(cx);
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OsbAnswers<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        if this.replacing.is_none() {
            match with_osb_body(buf) {
                Some(answer) => this.replacing = Some((answer, 0, buf.len())),
                None => {
                    let written = Pin::new(&mut this.inner).poll_write(cx, buf);
                    this.flushed = matches!(written, Poll::Ready(Ok(n)) if n == buf.len());
                    if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                        this.answered = true;
                    }
                    return written;
                }
            }
        }
        this.answered = true;
        let Some((answer, written, replaces)) = &mut this.replacing else {
            return Poll::Ready(Ok(0));
        };
        while let Some(rest) = answer.get(*written..).filter(|rest| !rest.is_empty()) {
            match Pin::new(&mut this.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => {
                    this.replacing = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => {
                    this.replacing = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let replaced = (*replaces).min(buf.len());
        this.replacing = None;
        this.flushed = replaced == buf.len();
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The 400 for a malformed chunked body (the connection closes after it).
fn malformed_body_answer(reason: &str) -> Vec<u8> {
    let description = format!("malformed request body: {reason} in its chunked encoding");
    let body = serde_json::to_vec(&serde_json::json!({ "description": description })).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// `buf` with an OSB error body, when it is exactly one bodiless error answer of the HTTP layer.
fn with_osb_body(buf: &[u8]) -> Option<Vec<u8>> {
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.1 5")) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) if length == buf.len() => {}
        _ => return None,
    }
    let status = response.code?;
    let mut empty = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-type") {
            return None;
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            if header.value != b"0" {
                return None;
            }
            empty = true;
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::to_vec(&serde_json::json!({ "description": describe(status) })).ok()?;
    let mut out = Vec::with_capacity(buf.len() + body.len() + 48);
    out.extend_from_slice(
        format!("HTTP/1.1 {status} {}\r\n", response.reason.unwrap_or_default()).as_bytes(),
    );
    for header in response.headers.iter() {
        if !header.name.eq_ignore_ascii_case("content-length") {
            out.extend_from_slice(header.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(header.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    Some(out)
}

/// What the HTTP layer's answer `status` means for the platform.
fn describe(status: u16) -> String {
    match status {
        400 => "malformed HTTP request: the request line, the path (ASCII, percent-encoded), a header \
                or the chunked body could not be parsed"
            .to_owned(),
        408 => "the request did not arrive in time".to_owned(),
        413 => "the request is too large".to_owned(),
        431 => "the request head is too large: at most 96 headers and 128 KiB".to_owned(),
        status => format!("the request could not be read (HTTP {status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodiless_error_answers_get_an_osb_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 06 Dec 2026 05:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(with_osb_body(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(
            head.contains("connection: close\r\n") && head.contains("date: Sun"),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["description"].as_str().unwrap().contains("96 headers"));
    }

    #[test]
    fn everything_else_passes_untouched() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"a\":1}",
            b"HTTP/1.1 5",
        ] {
            assert_eq!(with_osb_body(answer), None, "{}", String::from_utf8_lossy(answer));
        }
    }
}
