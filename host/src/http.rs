//! The daemon's HTTP listener: `GET /healthz` and `GET /metrics`.
//!
//! Invariants:
//! - It reads at most [`MAX_REQUEST_BYTES`] of a request and answers within [`REQUEST_TIMEOUT`];
//!   anything but the two GET routes gets 404 or 405. It never blocks the pipeline: it runs on the
//!   store stage's runtime and only reads counters.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::runtime::Registry;

/// Longest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `listen` and serves until the runtime ends.
pub async fn serve(listen: &str, metrics: Arc<Metrics>, registry: Arc<Registry>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(listen, "serving /metrics and /healthz");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, registry) = (metrics.clone(), registry.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_REQUEST_BYTES];
                let mut len = 0;
                let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    while len < buf.len() {
                        let n = conn.read(&mut buf[len..]).await?;
                        if n == 0 {
                            break;
                        }
                        len += n;
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
                if !matches!(read, Ok(Ok(()))) {
                    return;
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, body, kind) = match (method, path.split('?').next().unwrap_or("")) {
                    ("GET", "/healthz") => ("200 OK", "ok\n".to_owned(), "text/plain"),
                    ("GET", "/metrics") => ("200 OK", metrics.render(&registry), "text/plain; version=0.0.4"),
                    (_, "/healthz" | "/metrics") => ("405 Method Not Allowed", String::new(), "text/plain"),
                    _ => ("404 Not Found", String::new(), "text/plain"),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
