use herald_sdk::{Message, filter};

#[filter]
fn keep(_msg: &Message) -> Result<bool, String> {
    Ok(true)
}

fn main() {}
