//! A TCP fault proxy in front of an upstream broker, for the soak: while healthy it forwards bytes
//! both ways; while faulty every new connection gets the next fault of a fixed rotation (hang,
//! reset, 500 with an OSB error, 200 with garbage, a late answer past the gateway's timeout), and the
//! connections open when a fault phase begins are cut, so pooled keep-alive connections flap too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a faulty connection does, in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads the request and never answers (until the phase ends).
    Hang,
    /// Closes with a TCP reset.
    Reset,
    /// `500` with an OSB error body.
    ServerError,
    /// `200` with a body that is not JSON, as `text/html`.
    Garbage,
    /// Forwards, but only after [`SLOW_BY`]: past the gateway's operation timeout in the soak.
    Slow,
}

const ROTATION: [Fault; 5] = [
    Fault::Hang,
    Fault::Reset,
    Fault::ServerError,
    Fault::Garbage,
    Fault::Slow,
];

/// How late a [`Fault::Slow`] connection starts forwarding.
pub const SLOW_BY: Duration = Duration::from_secs(3);

/// A running proxy; dropping it does not stop it (the soak's runtime ends with the process).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faulty: watch::Sender<bool>,
    /// Connections served per phase kind: (healthy, faulty).
    counts: Arc<(AtomicU64, AtomicU64)>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`; starts healthy.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faulty, watcher) = watch::channel(false);
        let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let next_fault = Arc::new(AtomicUsize::new(0));
        let task_counts = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let watcher = watcher.clone();
                if *watcher.borrow() {
                    task_counts.1.fetch_add(1, Ordering::Relaxed);
                    let turn = next_fault.fetch_add(1, Ordering::Relaxed) % ROTATION.len();
                    let fault = ROTATION.get(turn).copied().unwrap_or(Fault::Hang);
                    tokio::spawn(misbehave(client, upstream, fault, watcher));
                } else {
                    task_counts.0.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(forward(client, upstream, watcher, Duration::ZERO));
                }
            }
        });
        Ok(FaultProxy { addr, faulty, counts })
    }

    /// Where platforms (here: the gateway) connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts or ends a fault phase. Starting one cuts the connections open now.
    pub fn set_faulty(&self, faulty: bool) {
        self.faulty.send_replace(faulty);
    }

    /// Connections accepted so far while (healthy, faulty).
    pub fn connections(&self) -> (u64, u64) {
        (
            self.counts.0.load(Ordering::Relaxed),
            self.counts.1.load(Ordering::Relaxed),
        )
    }
}

/// Pipes `client` ⇄ `upstream` after `delay`, until either side closes or a fault phase starts.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut phase: watch::Receiver<bool>,
    delay: Duration,
) {
    tokio::time::sleep(delay).await;
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let started_faulty = *phase.borrow();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = async {
            // A healthy connection dies when a fault phase begins (the slow one lives on).
            while phase.changed().await.is_ok() {
                if *phase.borrow() && !started_faulty {
                    return;
                }
            }
            std::future::pending::<()>().await;
        } => {}
    }
}

async fn misbehave(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    mut phase: watch::Receiver<bool>,
) {
    match fault {
        Fault::Slow => forward(client, upstream, phase, SLOW_BY).await,
        Fault::Reset => {
            let _ = client.set_zero_linger();
            drop(client);
        }
        Fault::Hang => {
            // Swallow whatever comes until the phase ends, then close.
            let mut sink = [0_u8; 4096];
            loop {
                tokio::select! {
                    read = client.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
                    changed = phase.changed() => if changed.is_err() || !*phase.borrow() { return },
                }
            }
        }
        Fault::ServerError | Fault::Garbage => {
            read_head(&mut client).await;
            let (status, content_type, body) = if fault == Fault::ServerError {
                (
                    "500 Internal Server Error",
                    "application/json",
                    r#"{"description":"injected by the soak's fault proxy"}"#,
                )
            } else {
                (
                    "200 OK",
                    "text/html",
                    "<html><body>upstream proxy error page</body></html>",
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
        }
    }
}

/// Reads until the end of the request head (or 1 s, or 64 KiB): enough to answer after the request.
async fn read_head(client: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while seen.len() < 64 * 1024 {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
}
