//! `herald plugin push` uploads a plugin; `herald plugin run` runs one
//! locally against a message, with the server's sandbox and limits, so
//! authors can try a plugin without a server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use herald::plugins::bindings::{Message, OutgoingRequest, Verdict};
use herald::plugins::{CallLimits, Compiled, Invocation, PluginEngine, PluginsConfig, validate};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Upload a `.wasm` component as a new version of plugin NAME.
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Herald's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "HERALD_URL")]
        server: String,
    },
    /// Run a plugin locally against a message and print the result as JSON.
    Run {
        file: PathBuf,
        /// JSON: {"body" or "body_base64", "content_type"?, "attributes"?, "topic"?, "id"?}
        #[arg(long)]
        message: PathBuf,
        /// The attachment config, a JSON object.
        #[arg(long)]
        config: Option<PathBuf>,
        /// For delivery plugins: the endpoint of the default request.
        #[arg(long, default_value = "https://example.com/hook")]
        url: String,
        /// CPU limit per call, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Memory limit per call, in bytes.
        #[arg(long)]
        memory_bytes: Option<usize>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFile {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    published_at_ms: Option<u64>,
}

fn read_message(path: &PathBuf) -> anyhow::Result<Message> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: MessageFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a message file", path.display()))?;
    let (body, default_type) = match (file.body, file.body_base64) {
        (Some(_), Some(_)) => bail!("give body or body_base64, not both"),
        (Some(Value::String(text)), None) => (text.into_bytes(), "text/plain"),
        (Some(json), None) => (serde_json::to_vec(&json)?, "application/json"),
        (None, Some(encoded)) => (
            B64.decode(encoded).context("body_base64")?,
            "application/octet-stream",
        ),
        (None, None) => (Vec::new(), "application/octet-stream"),
    };
    Ok(Message {
        id: file.id.unwrap_or_else(|| "msg_0000000000000001".into()),
        topic: file.topic.unwrap_or_else(|| "local".into()),
        body,
        content_type: Some(file.content_type.unwrap_or_else(|| default_type.into())),
        attributes: file.attributes.into_iter().collect(),
        published_at_ms: file.published_at_ms.unwrap_or_else(herald::time::now_ms),
        group_id: None,
    })
}

fn body_json(body: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(body) {
        Ok(text) => ("body", json!(text)),
        Err(_) => ("body_base64", json!(B64.encode(body))),
    }
}

fn message_json(message: &Message) -> Value {
    let (field, body) = body_json(&message.body);
    let mut value = json!({
        "id": message.id,
        "topic": message.topic,
        "content_type": message.content_type,
        "attributes": message.attributes.iter().cloned().collect::<BTreeMap<_, _>>(),
    });
    value[field] = body;
    value
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Push { file, name, server } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let url = format!("{}/v1/plugins/{name}", server.trim_end_matches('/'));
            let response = reqwest::Client::new()
                .put(&url)
                .header("content-type", "application/wasm")
                .body(bytes)
                .send()
                .await
                .with_context(|| format!("PUT {url}"))?;
            let status = response.status();
            let text = response.text().await?;
            println!("{text}");
            if !status.is_success() {
                bail!("upload refused with {status}");
            }
        }
        PluginCommand::Run {
            file,
            message,
            config,
            url,
            timeout_ms,
            memory_bytes,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let message = read_message(&message)?;
            let config = match config {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => "{}".into(),
            };
            serde_json::from_str::<serde_json::Map<String, Value>>(&config)
                .context("config must be a JSON object")?;
            let engine = Arc::new(PluginEngine::new()?);
            let (component, kind) = validate::inspect(&engine, &bytes)?;
            let compiled = engine.prepare(&component, kind)?;
            let defaults = PluginsConfig::default();
            let invocation = Invocation {
                label: file.display().to_string().into(),
                config,
                limits: CallLimits {
                    memory_bytes: memory_bytes.unwrap_or(defaults.memory_bytes),
                    timeout_ms: timeout_ms.unwrap_or(defaults.timeout_ms),
                    output_bytes: defaults.output_bytes,
                },
            };
            let started = std::time::Instant::now();
            let output = match &compiled {
                Compiled::Filter(pre) => {
                    let verdict = match engine.call_filter(pre, invocation, &message).await? {
                        Verdict::Accept => json!("accept"),
                        Verdict::Drop => json!("drop"),
                        Verdict::Reject(reason) => json!({ "reject": reason }),
                    };
                    json!({ "kind": "filter", "verdict": verdict })
                }
                Compiled::Transform(pre) => {
                    let output = engine.call_transform(pre, invocation, &message).await?;
                    json!({ "kind": "transform", "message": message_json(&output) })
                }
                Compiled::Delivery(pre) => {
                    let request = OutgoingRequest {
                        method: "POST".into(),
                        url,
                        headers: message
                            .content_type
                            .iter()
                            .map(|t| ("content-type".to_string(), t.clone()))
                            .collect(),
                        body: message.body.clone(),
                    };
                    let shaped = engine
                        .call_shape(pre, invocation, &message, request)
                        .await?;
                    let request = shaped.map(|r| {
                        let (field, body) = body_json(&r.body);
                        let mut value =
                            json!({ "method": r.method, "url": r.url, "headers": r.headers });
                        value[field] = body;
                        value
                    });
                    json!({ "kind": "delivery", "request": request })
                }
            };
            eprintln!("ran in {:.2} ms", started.elapsed().as_secs_f64() * 1000.0);
            println!("{}", serde_json::to_string_pretty(&output)?);
        }
    }
    Ok(())
}
