//! `herald bench`: starts a node and a receiver in this process, publishes
//! over real loopback HTTP, and prints publish throughput, delivery
//! throughput and publish-to-delivery latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use hdrhistogram::Histogram;
use herald::config::Config;
use herald::server::Node;
use tokio::sync::mpsc;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Messages to publish.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Subscriptions on the topic (each message is delivered to each).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Data directory; a temporary one by default.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let node = Node::start(Config::for_local(&data_dir)).await?;
    let base = node.url();

    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(usize, Instant)>();
    let receiver = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let tx = arrivals_tx.clone();
            async move {
                let seq = std::str::from_utf8(&body[..16.min(body.len())])
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok());
                if let Some(seq) = seq {
                    let _ = tx.send((seq, Instant::now()));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    client
        .put(format!("{base}/v1/topics/bench"))
        .send()
        .await?
        .error_for_status()?;
    for _ in 0..args.subscribers {
        client
            .post(format!("{base}/v1/topics/bench/subscriptions"))
            .json(&serde_json::json!({ "endpoint": hook }))
            .send()
            .await?
            .error_for_status()?;
    }

    println!(
        "herald bench: {} messages, {} publishers, {} subscriber(s), {} byte bodies, store at {}",
        args.messages,
        args.concurrency,
        args.subscribers,
        args.body_bytes,
        data_dir.display()
    );
    let sent_at: Arc<Vec<std::sync::OnceLock<Instant>>> = Arc::new(
        (0..args.messages)
            .map(|_| std::sync::OnceLock::new())
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut publish_latency = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, next, sent_at) =
            (client.clone(), base.clone(), next.clone(), sent_at.clone());
        let body_bytes = args.body_bytes.max(16);
        let total = args.messages;
        publishers.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("histogram");
            loop {
                let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seq >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let mut body = format!("{seq:<16}").into_bytes();
                body.resize(body_bytes, b'x');
                let begin = Instant::now();
                let _ = sent_at[seq].set(begin);
                client
                    .post(format!("{base}/v1/topics/bench/messages"))
                    .header("content-type", "text/plain")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                latencies.record(begin.elapsed().as_micros() as u64)?;
            }
        }));
    }
    for publisher in publishers {
        publish_latency.add(publisher.await??)?;
    }
    let publish_elapsed = started.elapsed();

    let expected = args.messages * args.subscribers;
    let mut delivery_latency = Histogram::<u64>::new(3)?;
    let mut received = 0usize;
    let mut last = started;
    while received < expected {
        let (seq, at) = tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
            .await
            .context("no delivery for 60 s")?
            .context("receiver stopped")?;
        if let Some(sent) = sent_at.get(seq).and_then(|s| s.get()) {
            delivery_latency.record(at.duration_since(*sent).as_micros() as u64)?;
        }
        received += 1;
        last = last.max(at);
    }
    let total_elapsed = last.duration_since(started);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "publish:  {:>9.0} msg/s  p50 {:.2} ms  p99 {:.2} ms  ({} in {:.2} s)",
        args.messages as f64 / publish_elapsed.as_secs_f64(),
        ms(&publish_latency, 0.5),
        ms(&publish_latency, 0.99),
        args.messages,
        publish_elapsed.as_secs_f64()
    );
    println!(
        "delivery: {:>9.0} msg/s  publish-to-delivery p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries in {:.2} s)",
        expected as f64 / total_elapsed.as_secs_f64(),
        ms(&delivery_latency, 0.5),
        ms(&delivery_latency, 0.99),
        delivery_latency.max() as f64 / 1000.0,
        expected,
        total_elapsed.as_secs_f64()
    );
    node.shutdown().await;
    Ok(())
}
