//! `herald receive`: a debugging webhook receiver that prints each delivery
//! and whether its signature verifies, much as `stripe listen` does.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;

use herald::signing;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Renders one delivery as the receiver prints it.
pub fn describe(headers: &HeaderMap, body: &[u8], key: Option<&[u8]>) -> String {
    let id = header(headers, "webhook-id");
    let timestamp = header(headers, "webhook-timestamp");
    let signature = match key {
        None => "not checked (no --secret)".to_string(),
        Some(key) => match timestamp.parse::<i64>() {
            Ok(ts) if signing::verify(key, id, ts, body, header(headers, "webhook-signature")) => {
                "verified".to_string()
            }
            _ => "INVALID".to_string(),
        },
    };
    let preview = match std::str::from_utf8(body) {
        Ok(text) if text.len() <= 2048 => text.to_string(),
        Ok(text) => format!(
            "{}… ({} bytes)",
            &text[..text.floor_char_boundary(2048)],
            text.len()
        ),
        Err(_) => format!("<{} bytes of binary>", body.len()),
    };
    let mut attributes: Vec<String> = headers
        .iter()
        .filter_map(|(name, value)| {
            let attr = name.as_str().strip_prefix("herald-attr-")?;
            Some(format!("{attr}={}", value.to_str().unwrap_or("?")))
        })
        .collect();
    attributes.sort();
    format!(
        "delivery {id}  topic={}  subscription={}  attempt={}  signature: {signature}\n  content-type: {}\n  attributes: {}\n  body: {preview}\n",
        header(headers, "herald-topic"),
        header(headers, "herald-subscription"),
        header(headers, "herald-attempt"),
        header(headers, "content-type"),
        if attributes.is_empty() {
            "-".to_string()
        } else {
            attributes.join(" ")
        },
    )
}

/// Listens on `127.0.0.1:port` until Ctrl-C.
pub async fn run(port: u16, secret: Option<String>) -> anyhow::Result<()> {
    let key = match secret {
        Some(secret) => {
            Some(signing::secret_key(&secret).map_err(|err| anyhow::anyhow!("--secret: {err}"))?)
        }
        None => None,
    };
    let app = Router::new().fallback(any(move |headers: HeaderMap, body: Bytes| {
        let key = key.clone();
        async move {
            print!("{}", describe(&headers, &body, key.as_deref()));
            StatusCode::OK
        }
    }));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("listening on {addr}: {err}"))?;
    println!(
        "herald receive: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
