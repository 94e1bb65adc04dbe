//! HTTP/1.1 upgrades (WebSocket-style) for the tunnel tests: an upstream
//! that answers 101 and echoes, and a client side that upgrades any stream.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw upstream that answers every WebSocket upgrade request with 101
/// and then echoes bytes; a request without `Upgrade: websocket` is closed.
pub async fn upgrade_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                if !head.to_ascii_lowercase().contains("upgrade: websocket") {
                    return;
                }
                let switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
                if s.write_all(switch).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Upgrades `s` (a connection to the proxy) to a WebSocket: sends the
/// request, and asserts the 101 names the upgrade.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: svc.mesh.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write upgrade");
    let head = tokio::time::timeout(std::time::Duration::from_secs(10), read_head(s))
        .await
        .expect("101 in time")
        .expect("closed before the 101")
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
}

/// A message head, byte by byte (nothing past it is consumed); `None` if
/// the stream ends first.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if !matches!(s.read(&mut b).await, Ok(1)) {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
