use herald_sdk::{Message, transform};

#[transform]
fn keep<T>(msg: Message) -> Result<Message, String> {
    Ok(msg)
}

fn main() {}
