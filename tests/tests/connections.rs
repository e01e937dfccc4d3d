//! End-to-end: the API listener's limits against a real `kontor serve` on 127.0.0.1 — a
//! slowloris under a lowered file-descriptor limit, the head, request and write timeouts,
//! the request cap, and a workflows folder that cannot be read. Every test is bounded in
//! connections and time and reaches loopback only.

use std::time::{Duration, Instant};

use kontor_tests::{Server, copy_tree, shipped_workflows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &Server) -> String {
    server.api.url.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (end of stream or reset), at most
/// `limit`; what arrived and when it closed, `None` if it stayed open.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((received, started.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn workflow_names(server: &Server) -> Vec<String> {
    let (status, body) = server.api.get("/api/v1/workflows").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = body["workflows"]
        .as_array()
        .expect("a workflow list")
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `/metrics` as text, asked from loopback without a token.
async fn metrics(server: &Server) -> String {
    let response = reqwest::get(format!("{}/metrics", server.api.url))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "loopback reads /metrics without a token"
    );
    response.text().await.unwrap()
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_slowloris_of_2000_connections_under_a_low_descriptor_limit_leaves_healthz_answering() {
    // A long head timeout: here the connection cap alone has to hold.
    let mut server = Server::prepare(
        &shipped_workflows(),
        None,
        &[("KONTOR_HTTP_HEADER_TIMEOUT", "120s")],
    )
    .unwrap();
    server.launch_with_fd_limit(512).unwrap();
    let before = workflow_names(&server).await;
    assert!(!before.is_empty());

    let address = address(&server);
    let mut slow = Vec::new();
    for _ in 0..2000 {
        // A connect may wait a moment while the kernel's accept queue is full.
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&address)).await
        {
            let _ = stream
                .write_all(b"GET /api/v1/workflows HTTP/1.1\r\nHost: kontor\r\nX-Slow: ")
                .await;
            slow.push(stream);
        }
    }
    assert!(slow.len() >= 1900, "only {} connections opened", slow.len());

    // Over the ~384 connections 512 descriptors leave room for, still hanging on.
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let healthz = fresh
        .get(format!("{}/healthz", server.api.url))
        .send()
        .await
        .expect("/healthz answers during the slowloris");
    assert_eq!(healthz.status(), 200);
    // The folder scan (every 2 s) ran while the connections were open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        workflow_names(&server).await,
        before,
        "every workflow still loaded"
    );
    let text = metrics(&server).await;
    assert!(
        counter(&text, "kontor_http_connections_evicted_total") >= 1000.0,
        "{text}"
    );
    assert_eq!(counter(&text, "kontor_folder_scan_failures_total"), 0.0);
    let open = counter(&text, "kontor_http_connections");
    assert!(open <= 384.0, "{open} connections open under the cap");
    drop(slow);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        !log.contains("keeping the workflows loaded before"),
        "{log}"
    );
}

#[tokio::test]
async fn half_sent_heads_and_idle_kept_alive_connections_close_after_the_header_timeout() {
    let server = Server::start(
        &shipped_workflows(),
        &[("KONTOR_HTTP_HEADER_TIMEOUT", "1s")],
    )
    .unwrap();
    let address = address(&server);

    let mut half = TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: kontor\r\n")
        .await
        .unwrap();
    let (received, after) = read_until_closed(&mut half, Duration::from_secs(20))
        .await
        .expect("a half-sent head is closed");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    assert!(!received.starts_with(b"HTTP/1.1 200"), "never answered");

    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: kontor\r\n\r\n")
        .await
        .unwrap();
    let (received, _) = read_until_closed(&mut idle, Duration::from_secs(20))
        .await
        .expect("an idle kept-alive connection is closed");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"status":"ok"}"#), "{text}");

    let mut silent = TcpStream::connect(&address).await.unwrap();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(20))
            .await
            .is_some(),
        "a connection that never sends is closed"
    );
}

#[tokio::test]
async fn requests_over_the_cap_get_503_and_a_stalled_body_times_out() {
    let server = Server::start(
        &shipped_workflows(),
        &[
            ("KONTOR_HTTP_MAX_REQUESTS", "2"),
            ("KONTOR_HTTP_REQUEST_TIMEOUT", "10s"),
        ],
    )
    .unwrap();
    let address = address(&server);
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: kontor\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\":",
        server.api.token
    );
    // Stalled requests until one more is turned away at once: then the two permits are
    // held by stalled bodies, not by anything else.
    let mut stalled = Vec::new();
    let turned_away = loop {
        assert!(stalled.len() < 10, "no request was ever turned away");
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        if let Some((answer, _)) = read_until_closed(&mut stream, Duration::from_millis(500)).await
        {
            break String::from_utf8_lossy(&answer).into_owned();
        }
        stalled.push(stream);
    };
    assert!(stalled.len() >= 2, "{} stalled", stalled.len());
    assert!(turned_away.starts_with("HTTP/1.1 503"), "{turned_away}");
    assert!(turned_away.contains("retry-after: 1"), "{turned_away}");
    assert!(turned_away.contains("http.max_requests"), "{turned_away}");
    let (status, headers, body) = server
        .api
        .get_with_headers("/api/v1/workflows")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(
        server.api.get_anonymous("/healthz").await.unwrap(),
        200,
        "liveness is not capped"
    );
    let mut timed_out = 0;
    for mut stream in stalled {
        let (received, _) = read_until_closed(&mut stream, Duration::from_secs(40))
            .await
            .expect("a stalled request is ended");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        timed_out += usize::from(text.contains("http.request_timeout"));
    }
    assert_eq!(timed_out, 2, "the two stalled bodies ran out of time");
    assert!(!workflow_names(&server).await.is_empty());
    let text = metrics(&server).await;
    assert!(counter(&text, "kontor_http_requests_shed_total") >= 1.0);
    assert_eq!(counter(&text, "kontor_http_requests_timed_out_total"), 2.0);
}

#[tokio::test]
async fn an_answer_nobody_reads_closes_the_connection_after_the_write_timeout() {
    let server = Server::start(
        &shipped_workflows(),
        &[
            ("KONTOR_HTTP_WRITE_TIMEOUT", "1s"),
            ("KONTOR_HTTP_HEADER_TIMEOUT", "30s"),
        ],
    )
    .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(address(&server).parse().unwrap())
        .await
        .unwrap();
    // Pipelined requests for the OpenAPI document (tens of KiB each), none of it read.
    const REQUESTS: usize = 400;
    let requests = "GET /api/v1/openapi.json HTTP/1.1\r\nHost: kontor\r\n\r\n".repeat(REQUESTS);
    stream.write_all(requests.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("the stalled connection was closed");
    let answers = String::from_utf8_lossy(&received)
        .matches("HTTP/1.1 200 OK")
        .count();
    assert!(
        answers < REQUESTS,
        "the server gave up on the reader after {answers} answers"
    );
    // The server itself is fine.
    assert_eq!(server.api.get_anonymous("/healthz").await.unwrap(), 200);
}

#[tokio::test]
async fn a_workflows_folder_that_cannot_be_read_keeps_the_workflows_loaded_before() {
    let root = tempfile::tempdir().unwrap();
    let workflows = root.path().join("workflows");
    copy_tree(&shipped_workflows(), &workflows);
    let server = Server::start(&workflows, &[]).unwrap();
    let before = workflow_names(&server).await;

    // The folder's path now names a file: reading it as a folder fails.
    let aside = root.path().join("aside");
    std::fs::rename(&workflows, &aside).unwrap();
    std::fs::write(&workflows, "not a folder").unwrap();
    let started = Instant::now();
    let warned = loop {
        let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
        if log.contains("keeping the workflows loaded before") {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(warned, "the failed scan is logged");
    assert_eq!(workflow_names(&server).await, before);
    let text = metrics(&server).await;
    assert!(
        counter(
            &text,
            "kontor_folder_scan_failures_total{folder=\"workflows\"}"
        ) >= 1.0,
        "{text}"
    );
    let run = server
        .api
        .post(
            "/api/v1/workflows/recall-campaign/runs",
            &serde_json::json!({"input": {"campaign": "R", "series": "S", "customers": []}}),
        )
        .await
        .unwrap();
    assert_eq!(run.0, 201, "runs still start: {}", run.1);
}
