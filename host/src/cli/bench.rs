//! `herald bench`: starts a node and a receiver in this process, publishes
//! over real loopback HTTP, and prints publish throughput, delivery
//! throughput and publish-to-delivery latency. With `--plugin`, it runs
//! again with those plugins on the topic and prints the ratio, and times
//! each plugin's calls on their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use hdrhistogram::Histogram;
use herald::config::Config;
use herald::plugins::bindings::Message;
use herald::plugins::{Compiled, Invocation, PluginEngine, PluginsConfig, validate};
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
    /// A plugin (`.wasm`) to attach to the topic, in order; repeatable. With
    /// plugins, the run is made twice, without and with them, and the
    /// per-call cost of each plugin is measured on its own too.
    #[arg(long = "plugin")]
    pub plugins: Vec<std::path::PathBuf>,
    /// The JSON config of the plugin at the same position.
    #[arg(long = "plugin-config")]
    pub plugin_configs: Vec<String>,
}

/// What one run measured.
struct RunFigures {
    publish_rate: f64,
    delivery_rate: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.plugin_configs.len() > args.plugins.len() {
        anyhow::bail!("more --plugin-config than --plugin");
    }
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
        post(move |headers: HeaderMap| {
            let tx = arrivals_tx.clone();
            async move {
                // The sequence number rides in an attribute, which plugins keep.
                let seq = headers
                    .get("herald-attr-seq")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<usize>().ok());
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

    println!(
        "herald bench: {} messages, {} publishers, {} subscriber(s), {} byte bodies, store at {}",
        args.messages,
        args.concurrency,
        args.subscribers,
        args.body_bytes,
        data_dir.display()
    );
    let bench = Bench {
        args: &args,
        client: &client,
        base: &base,
        hook: &hook,
    };
    let plain = bench.run_once("bench", &[], &mut arrivals).await?;
    if !args.plugins.is_empty() {
        let mut chain = Vec::new();
        for (i, path) in args.plugins.iter().enumerate() {
            let config = args.plugin_configs.get(i).map_or("{}", String::as_str);
            let name = format!("bench-plugin-{i}");
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            client
                .put(format!("{base}/v1/plugins/{name}"))
                .body(bytes.clone())
                .send()
                .await?
                .error_for_status()?;
            let config: serde_json::Value =
                serde_json::from_str(config).context("--plugin-config must be JSON")?;
            chain.push(serde_json::json!({ "name": name, "config": config }));
            per_call_cost(path, &bytes, &config).await?;
        }
        let plugged = bench
            .run_once("bench-plugins", &chain, &mut arrivals)
            .await?;
        println!(
            "with {} topic plugin(s): publish throughput x{:.2}, delivery throughput x{:.2} of the run without",
            chain.len(),
            plugged.publish_rate / plain.publish_rate,
            plugged.delivery_rate / plain.delivery_rate
        );
    }
    node.shutdown().await;
    Ok(())
}

/// Times calls of one plugin on its own, with the server's default limits.
async fn per_call_cost(
    path: &std::path::Path,
    bytes: &[u8],
    config: &serde_json::Value,
) -> anyhow::Result<()> {
    const CALLS: usize = 2000;
    let engine = Arc::new(PluginEngine::new()?);
    let (component, kind) = validate::inspect(&engine, bytes)?;
    let compiled = engine.prepare(&component, kind)?;
    let message = Message {
        id: "msg_0000000000000001".into(),
        topic: "bench".into(),
        body: br#"{"order": 42, "email": "ann@example.com", "total": "19.99"}"#.to_vec(),
        content_type: Some("application/json".into()),
        attributes: vec![("seq".into(), "1".into())],
        published_at_ms: herald::time::now_ms(),
        group_id: None,
    };
    let mut histogram = Histogram::<u64>::new(3)?;
    for _ in 0..CALLS {
        let invocation = Invocation {
            label: "bench".into(),
            config: config.to_string(),
            limits: PluginsConfig::default().default_limits(),
        };
        let begin = Instant::now();
        match &compiled {
            Compiled::Filter(pre) => drop(engine.call_filter(pre, invocation, &message).await?),
            Compiled::Transform(pre) => {
                drop(engine.call_transform(pre, invocation, &message).await?)
            }
            Compiled::Delivery(_) => anyhow::bail!(
                "{}: bench attaches topic plugins; a delivery plugin runs per subscription",
                path.display()
            ),
        }
        histogram.record(begin.elapsed().as_nanos() as u64)?;
    }
    println!(
        "plugin {} ({}): {CALLS} calls, mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs per call (fresh instance, limits on)",
        path.display(),
        kind.as_str(),
        histogram.mean() / 1000.0,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
    );
    Ok(())
}

struct Bench<'a> {
    args: &'a BenchArgs,
    client: &'a reqwest::Client,
    base: &'a str,
    hook: &'a str,
}

impl Bench<'_> {
    /// One run on a fresh topic with the given plugin chain: publishes, waits
    /// for every delivery, prints the figures.
    async fn run_once(
        &self,
        topic: &str,
        chain: &[serde_json::Value],
        arrivals: &mut mpsc::UnboundedReceiver<(usize, Instant)>,
    ) -> anyhow::Result<RunFigures> {
        let (args, client, base) = (self.args, self.client, self.base);
        client
            .put(format!("{base}/v1/topics/{topic}"))
            .json(&serde_json::json!({ "plugins": chain }))
            .send()
            .await?
            .error_for_status()?;
        for _ in 0..args.subscribers {
            client
                .post(format!("{base}/v1/topics/{topic}/subscriptions"))
                .json(&serde_json::json!({ "endpoint": self.hook }))
                .send()
                .await?
                .error_for_status()?;
        }
        let sent_at: Arc<Vec<std::sync::OnceLock<Instant>>> = Arc::new(
            (0..args.messages)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        );
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut publish_latency = Histogram::<u64>::new(3)?;
        let started = Instant::now();
        let mut publishers = Vec::new();
        let url = format!("{base}/v1/topics/{topic}/messages");
        for _ in 0..args.concurrency {
            let (client, url, next, sent_at) =
                (client.clone(), url.clone(), next.clone(), sent_at.clone());
            let body_bytes = args.body_bytes.max(16);
            let total = args.messages;
            publishers.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3).expect("histogram");
                loop {
                    let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seq >= total {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let mut body = format!("{{\"seq\": {seq:<10}, \"pad\": \"").into_bytes();
                    body.resize(body_bytes.saturating_sub(2).max(body.len()), b'x');
                    body.extend_from_slice(b"\"}");
                    let begin = Instant::now();
                    let _ = sent_at[seq].set(begin);
                    client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("herald-attr-seq", seq.to_string())
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
        let figures = RunFigures {
            publish_rate: args.messages as f64 / publish_elapsed.as_secs_f64(),
            delivery_rate: expected as f64 / total_elapsed.as_secs_f64(),
        };
        println!("topic {topic} ({} plugin(s)):", chain.len());
        println!(
            "  publish:  {:>9.0} msg/s  p50 {:.2} ms  p99 {:.2} ms  ({} in {:.2} s)",
            figures.publish_rate,
            ms(&publish_latency, 0.5),
            ms(&publish_latency, 0.99),
            args.messages,
            publish_elapsed.as_secs_f64()
        );
        println!(
            "  delivery: {:>9.0} msg/s  publish-to-delivery p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries in {:.2} s)",
            figures.delivery_rate,
            ms(&delivery_latency, 0.5),
            ms(&delivery_latency, 0.99),
            delivery_latency.max() as f64 / 1000.0,
            expected,
            total_elapsed.as_secs_f64()
        );
        Ok(figures)
    }
}
