//! The `borg-node` executable: parses the command line and dispatches. See the library crate.

use std::{io::IsTerminal, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use borg_node::{
    behaviour::TransportKind,
    cli::{self, Cli, Command, RunArgs},
    config::{Config, Layer, LogFormat},
    control, identity, node,
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let data_dir = cli::data_dir(&cli)?;
    match cli.command {
        Command::Run(args) => run(&data_dir, args, cli.verbose),
        Command::Id => {
            let key = identity::load_or_create(&data_dir)?;
            let peer_id = key.public().to_peer_id();
            if cli.json {
                println!("{}", serde_json::json!({ "peer_id": peer_id.to_string() }));
            } else {
                println!("{peer_id}");
            }
            Ok(())
        }
        command => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(cli::run_client(command, &data_dir, cli.json)),
    }
}

fn load_config(data_dir: &Path, args: &RunArgs) -> Result<Config> {
    let file = match &args.config {
        Some(path) => Some(path.clone()),
        None => Some(data_dir.join("config.toml")).filter(|p| p.exists()),
    };
    let file_layer = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            Layer::from_toml(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => Layer::default(),
    };
    let env_layer = Layer::from_env(|k| std::env::var(k).ok())?;
    let flag_layer = Layer {
        listen: Some(args.listen.clone()).filter(|v| !v.is_empty()),
        bootstrap: Some(args.bootstrap.clone()).filter(|v| !v.is_empty()),
        orgs: Some(args.orgs.clone()).filter(|v| !v.is_empty()),
        mdns: args.no_mdns.then_some(false),
        log_format: args.log_format,
        store: args.store.then_some(true),
        ..Layer::default()
    };
    Config::resolve(
        data_dir.to_owned(),
        file_layer
            .overridden_by(env_layer)
            .overridden_by(flag_layer),
    )
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        // kad warns about an empty routing table at every start of a lone node; that is
        // normal here, not a problem worth a warning.
        0 => "warn,libp2p_kad=error,borg_node=info,borg_proto=info,borg_store=info",
        1 => "info,borg_node=debug,borg_proto=debug,borg_store=debug",
        _ => "debug,borg_node=trace,borg_proto=trace,borg_store=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(data_dir: &Path, args: RunArgs, verbose: u8) -> Result<()> {
    let config = load_config(data_dir, &args)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging(config.log_format, verbose);
    let keypair = identity::load_or_create(data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = control::bind(data_dir).await?;
        let handle = match node::start(keypair, config, TransportKind::Network).await {
            Ok(handle) => handle,
            Err(e) => {
                let _ = std::fs::remove_file(control::socket_path(data_dir));
                return Err(e);
            }
        };
        tracing::info!(peer_id = %handle.peer_id(), data_dir = %data_dir.display(), "borg-node running");
        let server = tokio::spawn(control::serve(listener, handle.clone()));
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        handle.shutdown().await;
        server.abort();
        let _ = std::fs::remove_file(control::socket_path(data_dir));
        anyhow::Ok(())
    })?;
    // Don't wait for blocking tasks (stdin readers etc.): shutdown must stay under a second.
    Ok(())
}
