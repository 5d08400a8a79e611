//! A raw HTTP/1.1 client over a TCP socket, for what an HTTP library would not send: paths with
//! dot segments or non-ASCII bytes as they are, header floods, broken chunked bodies, bodies that
//! trickle in. It writes the bytes given (optionally in timed pieces) and reads one answer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read off the socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `true` for an OSB error body: a JSON object with a non-empty string `description`.
    pub fn is_osb_error(&self) -> bool {
        self.json().is_some_and(|v| {
            v.get("description")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|d| !d.is_empty())
        })
    }
}

/// A request head: `METHOD target HTTP/1.1`, `Host`, the platform's credentials and API version
/// (unless `bare`), `extra` header lines, and `Content-Length` when a body follows.
pub fn head(method: &str, target: &str, body_len: Option<usize>, extra: &[String]) -> Vec<u8> {
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        super::gateway::PLATFORM_USER,
        super::gateway::PLATFORM_PASSWORD
    ));
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Basic {credentials}\r\n\
         X-Broker-API-Version: 2.17\r\nConnection: close\r\n"
    );
    if let Some(len) = body_len {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {len}\r\n"
        ));
    }
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A whole request: [`head`] and `body`.
pub fn request(method: &str, target: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = head(method, target, body.map(<[u8]>::len), &[]);
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Sends `bytes` and reads the answer (until the connection closes, or the body's length).
/// `None` when the connection was dropped without an answer.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    send_pieces(addr, &[(bytes.to_vec(), Duration::ZERO)]).await
}

/// Sends each piece after its delay (write errors end the sending: the server may answer early),
/// then reads the answer.
pub async fn send_pieces(addr: SocketAddr, pieces: &[(Vec<u8>, Duration)]) -> Option<RawResponse> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut reader, mut writer) = stream.into_split();
    let pieces = pieces.to_vec();
    let writing = tokio::spawn(async move {
        for (bytes, delay) in pieces {
            tokio::time::sleep(delay).await;
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let read = async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    received.extend_from_slice(buffer.get(..n).unwrap_or_default());
                    if complete(&received) {
                        break;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), read).await;
    writing.abort();
    parse(&received)
}

/// `true` once `bytes` hold a head and as much body as its `Content-Length` says.
fn complete(bytes: &[u8]) -> bool {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| bytes.len() >= end + 4 + n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse(bytes: &[u8]) -> Option<RawResponse> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = bytes[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}
