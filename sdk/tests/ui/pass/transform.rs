use herald_sdk::{Message, transform};

#[transform]
fn shout(mut msg: Message) -> Result<Message, String> {
    let loud = msg.body_str().ok_or("body is not UTF-8")?.to_uppercase();
    msg.set_body(loud);
    Ok(msg)
}

fn main() {
    assert_eq!(shout(Message::new("t", "hi")).unwrap().body, b"HI");
}
