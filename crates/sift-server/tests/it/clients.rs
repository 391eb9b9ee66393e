//! Limits on clients, over real sockets: a cap on open connections, a header timeout, a body
//! timeout answering 408.

use std::time::{Duration, Instant};

use sift_server::{Listen, ServerConfig, serve};
use sift_test_support::{Reply, ScriptedServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::app;

async fn start(config: ServerConfig, limits: Listen) -> (std::net::SocketAddr, ScriptedServer) {
    let upstream = ScriptedServer::start().await;
    let router = app(&upstream, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, limits, std::future::pending()));
    (addr, upstream)
}

/// Reads until the server closes, or `limit` passes; what was read and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s, Duration::from_secs(5)).await.0
}

#[tokio::test]
async fn a_client_slow_with_its_headers_is_disconnected() {
    let limits = Listen::default().header_timeout(Duration::from_millis(500));
    let (addr, _upstream) = start(ServerConfig::default(), limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /user HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "still open after 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the idle connection was kept past the timeout");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let (addr, upstream) = start(
        ServerConfig::default().body_timeout(Duration::from_millis(500)),
        Listen::default(),
    )
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\": ",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body did not arrive within 0.5 s"),
        "{answer}"
    );
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let limits = Listen::default()
        .max_connections(2)
        .header_timeout(Duration::from_secs(30));
    let (addr, _upstream) = start(ServerConfig::default(), limits).await;
    let mut held = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is accepted by the kernel but not served while two are open.
    let waiting = tokio::spawn(healthz(addr));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    held.pop();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a place freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

/// Opens a `/user` request whose body arrives as `n` one-byte chunks and does not end.
async fn dripping(addr: std::net::SocketAddr, n: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // The text holds the answer the upstream gives (`Ann`, 30): answers are grounded.
    let body = format!(
        "{{\"query\": \"Ann is 30 {}\"}}",
        "a".repeat(n.saturating_sub(23))
    );
    let mut chunks = String::new();
    for c in body.chars() {
        chunks.push_str(&format!("1\r\n{c}\r\n"));
    }
    s.write_all(chunks.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn bodies_still_arriving_hold_no_more_than_the_body_memory() {
    let (addr, upstream) = start(
        ServerConfig::default()
            .body_memory(8 * 1024)
            .body_timeout(Duration::from_secs(20)),
        Listen::default(),
    )
    .await;
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name": "Ann", "age": 30}"#,
    ));
    // One body of 3,000 one-byte chunks, held open: it holds what arrived (a few KB), not
    // a block of the read buffer per chunk.
    let mut first = dripping(addr, 3000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second, whole body that does not fit beside it is refused, saying why.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let body = format!("{{\"query\": \"Bo is 31 {}\"}}", "b".repeat(5991));
    second
        .write_all(
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut second, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        answer.contains("busy reading other request bodies"),
        "{answer}"
    );
    // The first ends and is served; its memory is given back, so the next fits.
    first.write_all(b"0\r\n\r\n").await.unwrap();
    let mut reply = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name": "Bo", "age": 31}"#,
    ));
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_arrives() {
    let (addr, upstream) = start(ServerConfig::default().body_limit(1000), Listen::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked one is cut off as it passes the limit.
    let mut s = dripping(addr, 1200).await;
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(upstream.requests().is_empty());
}
