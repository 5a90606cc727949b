//! Runs the simulator on a fixed address until Ctrl-C: `cargo run -p keygate-mockex --example serve -- 127.0.0.1:9900 creds.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9900".into())
        .parse()?;
    let path = PathBuf::from(args.next().ok_or("usage: serve ADDR CREDENTIALS.json")?);
    let credentials = keygate_mockex::load_credentials(&path)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("mock exchange on http://{}", listener.local_addr()?);
    let shutdown = async {
        // Without a signal handler the server simply runs until killed.
        let _ = tokio::signal::ctrl_c().await;
    };
    keygate_mockex::serve(listener, credentials, shutdown).await?;
    Ok(())
}
