use herald_sdk::{Message, Verdict, filter};

#[filter(name = "x")]
fn keep(_msg: &Message) -> Result<Verdict, String> {
    Ok(Verdict::Accept)
}

fn main() {}
