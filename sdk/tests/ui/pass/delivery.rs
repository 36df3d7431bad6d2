use herald_sdk::{Message, OutgoingRequest, delivery};

#[derive(serde::Deserialize)]
struct Config {
    skip: bool,
}

#[delivery]
fn shape(
    _msg: &Message,
    mut request: OutgoingRequest,
    config: Config,
) -> Result<Option<OutgoingRequest>, String> {
    request.set_header("x-shaped", "1");
    Ok((!config.skip).then_some(request))
}

fn main() {
    let request = OutgoingRequest::new("http://127.0.0.1/hook");
    let shaped = shape(&Message::new("t", ""), request, Config { skip: false });
    assert_eq!(shaped.unwrap().unwrap().header("X-Shaped"), Some("1"));
}
