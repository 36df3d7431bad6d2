use herald_sdk::{Message, Verdict, filter};
use serde::Deserialize;

#[derive(Deserialize)]
struct RouterConfig {
    kind: String,
}

#[filter]
fn route(msg: &Message, config: RouterConfig) -> Result<Verdict, String> {
    Ok(Verdict::accept_if(msg.attribute("kind") == Some(&config.kind)))
}

fn main() {
    let msg = Message::new("t", "").with_attribute("kind", "a");
    let config = RouterConfig { kind: "a".into() };
    assert_eq!(route(&msg, config), Ok(Verdict::Accept));
}
