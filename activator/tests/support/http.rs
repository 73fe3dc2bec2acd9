//! Client-side helpers: one request per connection, a deadline, and a
//! loopback autoscaler that decodes the activator's stat frames.

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use metrics_proto::{Message, WireStatMessages};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A stand-in autoscaler: accepts the activator's websocket and decodes every
/// binary frame as `WireStatMessages`.
pub async fn autoscaler() -> (String, mpsc::UnboundedReceiver<WireStatMessages>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Binary(data) = msg {
                        let _ = tx.send(WireStatMessages::decode(data).expect("frame decodes"));
                    }
                }
            });
        }
    });
    (url, rx)
}

/// `f`, or a panic after `secs` seconds.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// One request on a new HTTP/1.1 connection: status, headers, body.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (u16, http::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// `GET path` with `Host: example.com` and `headers`: status and body.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = Request::get(path).header("host", "example.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, _, body) = send(addr, req.body(Full::new(Bytes::new())).unwrap()).await;
    (status, body)
}
