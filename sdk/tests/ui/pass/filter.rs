use herald_sdk::{Message, Verdict, filter};

#[filter]
fn keep_big(msg: &Message) -> Result<Verdict, String> {
    Ok(Verdict::accept_if(msg.body.len() > 3))
}

fn main() {
    assert_eq!(keep_big(&Message::new("t", "long")), Ok(Verdict::Accept));
    assert_eq!(keep_big(&Message::new("t", "no")), Ok(Verdict::Drop));
}
