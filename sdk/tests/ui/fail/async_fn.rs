use herald_sdk::{Message, Verdict, filter};

#[filter]
async fn keep(_msg: &Message) -> Result<Verdict, String> {
    Ok(Verdict::Accept)
}

fn main() {}
