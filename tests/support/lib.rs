//! Test support: in-process nodes, the real `herald` binary, a client that
//! states the status each call expects, and a receiver that captures
//! deliveries. Everything listens on `127.0.0.1:0`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use herald::config::Config;
use herald::server::Node;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub mod cluster;
pub mod hostile;
pub mod lb;

/// An in-process node on a temporary data directory.
pub struct TestServer {
    pub node: Option<Node>,
    pub client: TestClient,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = start_node(dir.path(), tune).await;
        let client = TestClient::new(&node.url());
        TestServer {
            node: Some(node),
            client,
            dir,
        }
    }

    /// Stops the node gracefully and starts another on the same directory.
    pub async fn restart_with(&mut self, tune: impl FnOnce(&mut Config)) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        let node = start_node(self.dir.path(), tune).await;
        self.client = TestClient::new(&node.url());
        self.node = Some(node);
    }
}

/// Logs of in-process nodes go to the test's output when
/// `HERALD_TEST_LOG` holds a filter (`HERALD_TEST_LOG=herald=debug`).
pub fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A local config tuned for tests: fast polling so retries are quick.
pub fn test_config(dir: &Path) -> Config {
    init_test_log();
    let mut config = Config::for_local(dir);
    config.sender.poll_interval_ms = 100;
    config.sender.shutdown_grace_ms = 2000;
    config.log = "warn".into();
    config
}

pub async fn start_node(dir: &Path, tune: impl FnOnce(&mut Config)) -> Node {
    let mut config = test_config(dir);
    tune(&mut config);
    Node::start(config).await.expect("node starts")
}

/// An HTTP client for the API that asserts each response's status.
#[derive(Clone)]
pub struct TestClient {
    pub base: String,
    pub http: reqwest::Client,
}

/// A response: status and the JSON body (Null when it was not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

impl TestClient {
    pub fn new(base: &str) -> TestClient {
        TestClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches herald");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, json, text }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `PUT /v1/topics/{topic}` with a JSON body; any status.
    pub async fn put_topic(&self, topic: &str, body: Value) -> Reply {
        let url = self.url(&format!("/v1/topics/{topic}"));
        self.send(self.http.put(url).json(&body)).await
    }

    /// `POST /v1/topics/{topic}/messages` with a raw body; any status.
    pub async fn post_message(&self, topic: &str, body: impl Into<Vec<u8>>) -> Reply {
        let url = self.url(&format!("/v1/topics/{topic}/messages"));
        self.send(self.http.post(url).body(body.into())).await
    }

    /// `PUT /v1/plugins/{name}` with a component's bytes; any status.
    pub async fn put_plugin(&self, name: &str, bytes: Vec<u8>) -> Reply {
        let url = self.url(&format!("/v1/plugins/{name}"));
        self.send(self.http.put(url).body(bytes)).await
    }

    /// Uploads the built plugin crate `crate_name` (see [`plugin_wasm`]) as
    /// `name`, expecting success; returns the response's JSON.
    pub async fn push_plugin(&self, name: &str, crate_name: &str) -> Value {
        let bytes = std::fs::read(plugin_wasm(crate_name)).expect("built plugin");
        let reply = self.put_plugin(name, bytes).await;
        assert!(
            matches!(reply.status, 200 | 201),
            "upload {name}: {}",
            reply.text
        );
        reply.json
    }

    /// Sends `method path` with an optional JSON body and checks the status.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>, expect: u16) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = self.send(request).await;
        assert_eq!(reply.status, expect, "{method} {path}: {}", reply.text);
        reply.json
    }

    pub async fn create_topic(&self, topic: &str) {
        let reply = self
            .send(self.http.put(self.url(&format!("/v1/topics/{topic}"))))
            .await;
        assert!(
            matches!(reply.status, 200 | 201),
            "create topic: {}",
            reply.text
        );
    }

    /// Subscribes `endpoint`; `extra` fields are merged in. Returns (id, secret).
    pub async fn subscribe(&self, topic: &str, endpoint: &str, extra: Value) -> (String, String) {
        let mut body = json!({ "endpoint": endpoint });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let created = self
            .call(
                "POST",
                &format!("/v1/topics/{topic}/subscriptions"),
                Some(body),
                201,
            )
            .await;
        (
            created["id"].as_str().expect("id").to_string(),
            created["secret"].as_str().expect("secret").to_string(),
        )
    }

    /// Publishes raw bytes; returns the message id.
    pub async fn publish(
        &self,
        topic: &str,
        body: impl Into<Vec<u8>>,
        content_type: Option<&str>,
    ) -> String {
        self.publish_with(topic, body, content_type, &[]).await
    }

    pub async fn publish_with(
        &self,
        topic: &str,
        body: impl Into<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> String {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/topics/{topic}/messages")))
            .body(body.into());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let reply = self.send(request).await;
        assert_eq!(reply.status, 202, "publish: {}", reply.text);
        reply.json["id"].as_str().expect("message id").to_string()
    }

    /// Polls `path` until `done(json)` holds, for state that has no event to
    /// await (a dead-letter queue filling up). Fails after `within`.
    pub async fn wait_for(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.call("GET", path, None, 200).await;
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never reached the expected state: {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
    pub at: Instant,
}

impl Delivery {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone)]
struct ReceiverState {
    script: Arc<Mutex<VecDeque<u16>>>,
    default_status: Arc<Mutex<u16>>,
    hang: Arc<Mutex<bool>>,
    delay: Arc<Mutex<Duration>>,
    tx: mpsc::UnboundedSender<Delivery>,
}

/// A webhook receiver: answers from a script of statuses, then with the
/// default status, and reports every request it got.
pub struct TestReceiver {
    pub url: String,
    pub addr: SocketAddr,
    state: ReceiverState,
    rx: mpsc::UnboundedReceiver<Delivery>,
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hang = *state.hang.lock().unwrap();
    let status = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| *state.default_status.lock().unwrap());
    let _ = state.tx.send(Delivery {
        headers,
        body,
        status,
        at: Instant::now(),
    });
    if hang {
        // A dead endpoint that accepts the connection and never answers.
        std::future::pending::<()>().await;
    }
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap()
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = ReceiverState {
            script: Arc::default(),
            default_status: Arc::new(Mutex::new(200)),
            hang: Arc::default(),
            delay: Arc::default(),
            tx,
        };
        let app = Router::new()
            .fallback(any(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestReceiver {
            url: format!("http://{addr}/hook"),
            addr,
            state,
            rx,
        }
    }

    /// Answer these statuses first, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn set_default(&self, status: u16) {
        *self.state.default_status.lock().unwrap() = status;
    }

    /// Accept requests and never answer them.
    pub fn hang(&self) {
        *self.state.hang.lock().unwrap() = true;
    }

    /// Answer every request only after `delay`: a slow endpoint.
    pub fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// The next request; `None` once the receiver is closed.
    pub async fn next_opt(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The next request, or a panic after `within`.
    pub async fn next(&mut self, within: Duration) -> Delivery {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .expect("a delivery arrives in time")
            .expect("receiver open")
    }

    /// Proves nothing arrives for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        let got = tokio::time::timeout(quiet, self.rx.recv()).await;
        assert!(
            got.is_err(),
            "unexpected delivery: {:?}",
            got.unwrap().map(|d| d.body)
        );
    }
}

/// The real `herald` binary, started as a child process.
pub struct HeraldProcess {
    pub child: Child,
    pub client: TestClient,
    pub addr: SocketAddr,
}

/// Path of the `herald` binary next to this test binary, built on demand.
pub fn herald_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary sits in target/<profile>/deps")?;
    let binary = profile_dir.join("herald");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "herald", "--bin", "herald"])
            .status()?;
        if !status.success() {
            bail!("cargo build of the herald binary failed");
        }
    }
    Ok(binary)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl HeraldProcess {
    /// Starts `herald serve --dev` on `data_dir` and waits for `/healthz`.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<HeraldProcess> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = Command::new(herald_binary()?)
            .args([
                "serve",
                "--dev",
                "--listen",
                &addr.to_string(),
                "--data-dir",
            ])
            .arg(data_dir)
            .env("HERALD_LOG", "warn")
            .env("HERALD_SENDER__POLL_INTERVAL_MS", "100")
            .stdin(Stdio::null())
            .spawn()?;
        let client = TestClient::new(&format!("http://{addr}"));
        let process = HeraldProcess {
            child,
            client,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = process
                .client
                .http
                .get(process.client.url("/healthz"))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!("herald did not become healthy on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().expect("reaped")
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plugin or hostile fixture (a crate in `plugins/` or
/// `tests/fixtures/plugins/`) as a wasm32-wasip2 component, e.g.
/// `plugin_wasm("spin-forever")`. The first call that finds one missing runs
/// `scripts/build-plugins`, which builds them all; `scripts/test` runs it
/// before the tests, so edited plugins are rebuilt there.
pub fn plugin_wasm(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = format!("{}.wasm", name.replace('-', "_"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("wasm32-wasip2/plugin").join(file);
    if !path.exists() {
        BUILD.call_once(|| {
            let status = Command::new(root.join("scripts/build-plugins"))
                .stdout(Stdio::null())
                .status()
                .expect("scripts/build-plugins starts");
            assert!(status.success(), "scripts/build-plugins failed");
        });
    }
    assert!(
        path.exists(),
        "no {} after scripts/build-plugins",
        path.display()
    );
    path
}
