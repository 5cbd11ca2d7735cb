//! The `tollgate` command line: `serve`, `validate`, `schema`, `version`, `sim`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tollgate",
    about = "AI-traffic processors for Envoy (ext_proc) and a standalone proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ext_proc server, the proxy and the admin server. Without -c, runs the
    /// embedded default config.
    Serve {
        /// Config file (YAML); watched and reloaded on change.
        #[arg(short, long, conflicts_with = "from_xds")]
        config: Option<PathBuf>,
        /// Take the config from a tollgate control plane at HOST:PORT (its gRPC server)
        /// over xDS instead of a file: the `xds.configs` entry `--config-name`, applied
        /// as a reload on each new version, kept while the server is away.
        #[arg(long, value_name = "HOST:PORT")]
        from_xds: Option<String>,
        /// The `xds.configs` entry to follow with `--from-xds`.
        #[arg(long, default_value = "default", requires = "from_xds")]
        config_name: String,
        /// This tollgate's xDS node id with `--from-xds`. Default: the host name.
        #[arg(long, requires = "from_xds")]
        node: Option<String>,
        /// Worker threads (like Envoy's --concurrency). Overrides `runtime.workers`;
        /// default: the CPU cores available.
        #[arg(long)]
        workers: Option<std::num::NonZeroUsize>,
    },
    /// Check a config file; exit 1 with the bad field's path if it is invalid.
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the config file's JSON Schema.
    Schema,
    /// Print the version.
    Version,
    /// xDS tools: `tollgate xds dump -c FILE` prints what tollgate would serve Envoy.
    Xds {
        #[command(subcommand)]
        command: XdsCommand,
    },
    /// Run simulated vLLM-like model servers (one listener each) for testing and
    /// benchmarking the endpoint picker without GPUs.
    Sim(tollgate::sim::SimArgs),
}

#[derive(Subcommand)]
enum XdsCommand {
    /// Print every resource tollgate would serve a node for a config file (its `xds`
    /// section), as Envoy's JSON or as YAML, with names and versions.
    Dump {
        #[arg(short, long)]
        config: PathBuf,
        /// The node id whose resources to print (see `xds.nodes`). Default: the
        /// resources of every node not listed there.
        #[arg(long)]
        node: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: DumpFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DumpFormat {
    Json,
    Yaml,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Schema => {
            let schema = schemars::schema_for!(tollgate::config::Config);
            let text = serde_json::to_string_pretty(&schema).expect("schema is JSON");
            // A closed pipe (`tollgate schema | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Command::Validate { config } => offline(|| validate(&config)),
        Command::Xds {
            command:
                XdsCommand::Dump {
                    config,
                    node,
                    format,
                },
        } => match offline(|| xds_dump(&config, node.as_deref(), format)) {
            Ok(text) => {
                let _ = writeln!(std::io::stdout(), "{text}");
                ExitCode::SUCCESS
            }
            Err(e) => failure("", e),
        },
        Command::Sim(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("starting the tokio runtime");
            match runtime.block_on(tollgate::sim::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate sim: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            workers,
            from_xds,
            config_name,
            node,
        } => {
            let source = match from_xds {
                Some(address) => {
                    tollgate::app::ConfigSource::Xds(tollgate::xds::client::ClientSettings {
                        address,
                        node: node.unwrap_or_else(host_name),
                        name: config_name,
                    })
                }
                None => tollgate::app::ConfigSource::File(config.clone()),
            };
            serve(
                source,
                workers.or_else(|| configured_workers(config.as_deref())),
            )
        }
    }
}

/// `tollgate validate`: loads the config and prints its notices, or every problem.
fn validate(config: &std::path::Path) -> ExitCode {
    match tollgate::app::load(Some(config), tollgate::services::Services::new()) {
        Ok(pipeline) => {
            for notice in &pipeline.loaded.notices {
                println!("notice: {notice}");
            }
            println!("{}: ok", config.display());
            ExitCode::SUCCESS
        }
        Err(e) => failure("", e),
    }
}

/// `tollgate serve`: runs until SIGTERM or SIGINT on `workers` worker threads.
fn serve(source: tollgate::app::ConfigSource, workers: Option<std::num::NonZeroUsize>) -> ExitCode {
    let runtime = runtime(workers)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match runtime.block_on(tollgate::app::run(source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure("tollgate: ", e),
    }
}

/// Prints `e` with its causes after `prefix`: a failed run.
fn failure(prefix: &str, e: anyhow::Error) -> ExitCode {
    eprintln!("{prefix}{e:#}");
    ExitCode::FAILURE
}

/// The runtime for `workers` worker threads (all cores when unset). One worker is a
/// current-thread runtime, like one nginx worker or Envoy with `--concurrency 1`: every
/// task on the thread that polls the sockets, with no work-stealing queues to pass through.
fn runtime(workers: Option<std::num::NonZeroUsize>) -> tokio::runtime::Builder {
    match workers.map(std::num::NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// `runtime.workers` of the config file (or the embedded default). A file that does not
/// load gives `None` here; `app::run` reports why.
fn configured_workers(path: Option<&std::path::Path>) -> Option<std::num::NonZeroUsize> {
    let loaded = match path {
        Some(p) => tollgate::config::load_file(p),
        None => tollgate::config::parse_str(tollgate::config::EMBEDDED_DEFAULT),
    };
    loaded.ok()?.config.runtime.workers
}

/// This machine's host name (the default xDS node id), or `tollgate`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tollgate".to_string())
}

/// Runs a command that builds a pipeline without serving it (`validate`, `xds dump`)
/// inside a small Tokio runtime: building starts what `serve` would (the OTLP
/// exporter's batch task), and dropping it stops that again.
fn offline<T>(command: impl FnOnce() -> T) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let _entered = runtime.enter();
    command()
}

/// `tollgate xds dump`: the config validated as `serve` would, then the node's snapshot.
fn xds_dump(
    path: &std::path::Path,
    node: Option<&str>,
    format: DumpFormat,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let pipeline = tollgate::app::load(Some(path), tollgate::services::Services::new())?;
    let fleet = tollgate::xds::generate::fleet(pipeline.config())
        .with_context(|| format!("{}", path.display()))?;
    let snapshot = fleet.snapshot(node.unwrap_or(""));
    let dump = serde_json::json!({
        "node": node,
        "resources": tollgate::xds::dump::snapshot_json(&snapshot)?,
    });
    Ok(match format {
        DumpFormat::Json => serde_json::to_string_pretty(&dump)?,
        DumpFormat::Yaml => serde_yaml::to_string(&dump)?,
    })
}
