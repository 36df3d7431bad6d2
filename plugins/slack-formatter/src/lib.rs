//! Sends the message as a Slack incoming-webhook payload, `{"text": …}`.
//!
//! Config (all optional): `template`, default `"*{topic}*: {body}"`, with
//! `{topic}`, `{id}`, `{body}`, `{content_type}` and `{attr.NAME}`; `url`,
//! to post somewhere other than the subscription's endpoint.

use herald_sdk::serde_json::{json, to_vec};
use herald_sdk::{Message, OutgoingRequest, delivery};
use serde::Deserialize;

#[derive(Default, Deserialize)]
#[serde(default)]
struct Config {
    template: Option<String>,
    url: Option<String>,
}

#[delivery]
fn slack(
    msg: &Message,
    mut request: OutgoingRequest,
    config: Config,
) -> Result<Option<OutgoingRequest>, String> {
    let text = render(
        config.template.as_deref().unwrap_or("*{topic}*: {body}"),
        msg,
    );
    request.set_body(to_vec(&json!({ "text": text })).map_err(|error| error.to_string())?);
    request.set_header("content-type", "application/json");
    request.url = config.url.unwrap_or(request.url);
    Ok(Some(request))
}

// One pass, so a body or attribute that contains `{…}` is never expanded.
fn render(template: &str, msg: &Message) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        let Some((key, tail)) = after.split_once('}') else {
            out.push('{');
            rest = after;
            break;
        };
        match field(msg, key) {
            Some(value) => out.push_str(&value),
            None => out.extend(['{'].into_iter().chain(key.chars()).chain(['}'])),
        }
        rest = tail;
    }
    out + rest
}

fn field(msg: &Message, key: &str) -> Option<String> {
    Some(match key {
        "topic" => msg.topic.clone(),
        "id" => msg.id.clone(),
        "body" => String::from_utf8_lossy(&msg.body).into_owned(),
        "content_type" => msg.content_type.clone().unwrap_or_default(),
        _ => msg
            .attribute(key.strip_prefix("attr.")?)
            .unwrap_or_default()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::serde_json::Value;

    fn text(template: Option<&str>, msg: &Message) -> Value {
        let config = Config {
            template: template.map(Into::into),
            url: None,
        };
        let request = slack(
            msg,
            OutgoingRequest::new("https://hooks.slack.test/x"),
            config,
        )
        .unwrap()
        .unwrap();
        assert_eq!(request.header("content-type"), Some("application/json"));
        herald_sdk::serde_json::from_slice::<Value>(&request.body).unwrap()["text"].clone()
    }

    #[test]
    fn default_template() {
        assert_eq!(
            text(None, &Message::new("orders", "hi {body}")),
            "*orders*: hi {body}"
        );
    }

    #[test]
    fn attributes_and_unknown_keys() {
        let msg = Message::new("t", "").with_attribute("kind", "created");
        assert_eq!(
            text(Some("{attr.kind} {attr.none}| {nope} {open"), &msg),
            "created | {nope} {open"
        );
    }

    #[test]
    fn url_override() {
        let config = Config {
            template: None,
            url: Some("https://other.test/".into()),
        };
        let request = slack(
            &Message::new("t", ""),
            OutgoingRequest::new("https://a.test/"),
            config,
        );
        assert_eq!(request.unwrap().unwrap().url, "https://other.test/");
    }
}
