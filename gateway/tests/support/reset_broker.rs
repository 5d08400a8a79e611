//! [`ResetBroker`]: a raw TCP upstream that serves its catalog and slams the connection shut
//! (RST, no answer) on every other request, after reading it: the "connection reset mid-call" fault.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// See the module docs.
pub struct ResetBroker {
    pub addr: SocketAddr,
    /// Requests other than the catalog that were read and then reset.
    pub resets: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ResetBroker {
    pub async fn start(catalog: Vec<u8>) -> ResetBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let resets = Arc::new(AtomicUsize::new(0));
        let counter = resets.clone();
        let catalog = Arc::new(catalog);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (catalog, counter) = (catalog.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut head = vec![0u8; 64 * 1024];
                    let Ok(n) = socket.read(&mut head).await else {
                        return;
                    };
                    let request = String::from_utf8_lossy(&head[..n]).into_owned();
                    if request.starts_with("GET /v2/catalog") {
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            catalog.len()
                        );
                        let _ = socket.write_all(reply.as_bytes()).await;
                        let _ = socket.write_all(&catalog).await;
                    } else {
                        counter.fetch_add(1, Ordering::SeqCst);
                        // Linger 0: close sends RST instead of FIN (and does not block, which is
                        // what the deprecation warns about for other values).
                        #[allow(deprecated)]
                        let _ = socket.set_linger(Some(std::time::Duration::ZERO));
                        drop(socket);
                    }
                });
            }
        });
        ResetBroker { addr, resets, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ResetBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
