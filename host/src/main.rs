//! The `herald` binary: a thin command-line layer over the library.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use herald::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: a self-hosted notification gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Directory of the embedded store [default: ./herald-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Local development: loopback only, loopback and private webhook endpoints allowed.
        #[arg(long)]
        dev: bool,
    },
    /// A debugging webhook receiver: prints each delivery and checks its signature.
    Receive {
        /// Port on 127.0.0.1 to listen on.
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The subscription's signing secret (whsec_…), to verify signatures.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Upload a plugin, or run one locally against a message.
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
    /// Measure publish throughput and publish-to-delivery latency on this machine.
    Bench(cli::bench::BenchArgs),
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only on a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
            dev,
        } => {
            let overrides = Overrides {
                listen,
                data_dir,
                dev,
            };
            let config = match Config::load(config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("herald: {err}");
                    std::process::exit(2);
                }
            };
            init_tracing(&config.log);
            herald::server::serve(config).await?;
        }
        Command::Receive { port, secret } => cli::receive::run(port, secret).await?,
        Command::Plugin(command) => {
            init_tracing("info");
            cli::plugin::run(command).await?;
        }
        Command::Bench(args) => {
            init_tracing("warn");
            cli::bench::run(args).await?;
        }
    }
    Ok(())
}
