//! Wiring and lifecycle: config → pipeline → admin, ext_proc and proxy servers → hot
//! reload → graceful shutdown (readiness false, then a grace period for in-flight
//! requests and streams).
//!
//! Listen addresses (`binds[].port`, `extProc.address`, `admin.address`) are read at
//! start; a reload that changes them is refused as a whole (see `reload`), so the open
//! sockets keep their routes until a restart applies the file.

mod reload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::adapters::{ext_proc, proxy};
use crate::admin::{self, AdminState};
use crate::config::{self, ConfigError, ConfigErrors, LoadedConfig};
use crate::pipeline::{Pipeline, PipelineStore};
use crate::services::Services;
use crate::xds::client::Follower;

/// How often the config file is checked for changes. A change applies once two polls
/// in a row read the same content (0.5–1 s after the write ends), so a file caught
/// mid-write is never applied; a constant because no operator has needed another.
const RELOAD_POLL: Duration = Duration::from_millis(500);

/// Loads and validates a config file, or the embedded default when `path` is `None`;
/// every semantic problem is reported (parse errors stop at the first).
pub fn load(path: Option<&std::path::Path>, services: Arc<Services>) -> anyhow::Result<Pipeline> {
    let loaded = match path {
        Some(p) => config::load_file(p),
        None => config::parse_str(config::EMBEDDED_DEFAULT),
    };
    let origin = path.map_or("embedded default config".to_string(), |p| {
        p.display().to_string()
    });
    let loaded = loaded.with_context(|| format!("invalid config {origin}"))?;
    validated(loaded, services).with_context(|| format!("invalid config {origin}"))
}

/// The pipeline of a parsed config, with every problem reported: that it serves
/// something, and everything `Pipeline::build` checks.
fn validated(loaded: LoadedConfig, services: Arc<Services>) -> Result<Pipeline, ConfigError> {
    let mut errs = ConfigErrors::default();
    errs.check(config::check_serves(&loaded.config));
    let pipeline = errs.check(Pipeline::build(loaded, services));
    errs.finish(pipeline)
        .map(|p| p.expect("built without errors"))
}

/// What the config asks for that deserves a warning: agentgateway keys tollgate knows
/// and does not implement, backends whose certificates are not verified.
pub(crate) fn log_notices(notices: &[String]) {
    for notice in notices {
        tracing::warn!(notice = %notice, "config notice");
    }
}

/// The build's own warning comes before logging is set up: say it again for every MCP
/// route whose sessions are sealed with a random per-process key.
fn warn_unkeyed_mcp_routes(config: &crate::config::Config) {
    let routes = config
        .binds
        .iter()
        .flat_map(|b| &b.listeners)
        .flat_map(|l| &l.routes);
    for route in routes {
        if route
            .mcp
            .as_ref()
            .is_some_and(|m| m.session.keys.is_empty())
        {
            let name = route.name.as_deref().unwrap_or("(unnamed)");
            tracing::warn!(route = %name, "no MCP session keys configured: sessions are sealed with a random key, valid only in this process");
        }
    }
}

/// Where the config comes from.
pub enum ConfigSource {
    /// A file, watched and reloaded on change (`None`: the embedded default).
    File(Option<PathBuf>),
    /// A tollgate control plane's `xds.configs` entry, followed over ADS.
    Xds(crate::xds::client::ClientSettings),
}

/// The first config of `source`: loaded from the file, or the first version the xDS
/// server sends that validates (the ones before are NACKed). `None`: stopped by a
/// signal while waiting for the server.
async fn first_pipeline(
    source: &ConfigSource,
    services: &Arc<Services>,
    follower: &mut Option<Follower>,
) -> anyhow::Result<Option<Pipeline>> {
    let settings = match source {
        ConfigSource::File(path) => return load(path.as_deref(), services.clone()).map(Some),
        ConfigSource::Xds(settings) => settings,
    };
    crate::telemetry::init(&config::LoggingConfig::default());
    tracing::info!(server = %settings.address, name = %settings.name, node = %settings.node, "waiting for the config from the xDS server");
    let mut f = Follower::new(settings.clone());
    let (_never, mut stop) = watch::channel(false);
    loop {
        let pending = tokio::select! {
            p = f.next(&mut stop) => p.expect("no stop signal"),
            _ = wait_for_signal() => return Ok(None),
        };
        let built = config::parse_str(&pending.text).and_then(|l| validated(l, services.clone()));
        match built {
            Ok(pipeline) => {
                f.answer(pending, Ok(())).await;
                *follower = Some(f);
                return Ok(Some(pipeline));
            }
            Err(e) => f.answer(pending, Err(e.to_string())).await,
        }
    }
}

/// Follows the config's source after the start: the file's watcher, or the xDS
/// subscription, each applying a change as a reload.
fn follow_source(
    source: ConfigSource,
    follower: Option<Follower>,
    store: &Arc<PipelineStore>,
    services: &Arc<Services>,
    stop: watch::Receiver<bool>,
) {
    let (store, services) = (store.clone(), services.clone());
    match (source, follower) {
        (ConfigSource::File(Some(path)), _) => {
            let origin = path.display().to_string();
            tokio::spawn(config::watch_file(path, RELOAD_POLL, stop, move |text| {
                let _ = reload::reload(&store, &services, &origin, &text);
            }));
        }
        (ConfigSource::Xds(settings), Some(mut follower)) => {
            let origin = format!("xds://{}/{}", settings.address, settings.name);
            let mut stop = stop;
            tokio::spawn(async move {
                while let Some(pending) = follower.next(&mut stop).await {
                    let result = reload::reload(&store, &services, &origin, &pending.text);
                    follower.answer(pending, result).await;
                }
            });
        }
        _ => {}
    }
}

/// Runs tollgate until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource) -> anyhow::Result<()> {
    let services = Services::new();
    let mut follower = None;
    let Some(pipeline) = first_pipeline(&source, &services, &mut follower).await? else {
        return Ok(());
    };
    if matches!(source, ConfigSource::File(_)) {
        crate::telemetry::init(&pipeline.config().logging);
    }
    warn_unkeyed_mcp_routes(pipeline.config());
    log_notices(&pipeline.loaded.notices);
    if pipeline.uses("token_limit") {
        // The tokenizer tables take ~0.25 s to build: not on the first request's clock.
        tokio::task::spawn_blocking(crate::llm::prewarm);
    }
    let config = pipeline.config().clone();
    let store = Arc::new(PipelineStore::new(pipeline));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = config.shutdown.grace_period.get();
    let admin = Admin::start(
        &config.admin.address,
        AdminState {
            store: store.clone(),
            ready: ready.clone(),
            xds: services.xds.clone(),
        },
    )
    .await?;

    let mut servers = Vec::new();
    if let Some(ext) = &config.ext_proc {
        let (server, ready_rx) = start_ext_proc(ext, &config, &store, &services, &stop_rx)?;
        servers.push(server);
        match ready_rx.await {
            Ok(addr) => tracing::info!(address = %addr, "ext_proc listening"),
            Err(_) => return finish_early(servers).await,
        }
    }
    if config.xds.is_some() {
        services
            .xds
            .publish(&config)
            .context("generating the xDS resources")?;
        tracing::info!(
            binds = config.binds.len(),
            "binds are served by Envoy over xDS; the proxy opens no listener of its own"
        );
    }
    servers.extend(start_proxies(&config, &store, &stop_rx).await?);
    follow_source(source, follower, &store, &services, stop_rx.clone());

    ready.store(true, Ordering::Release);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(workers, "tollgate ready");
    wait_for_signal().await;
    tracing::info!(grace_period = ?grace, "shutting down: readiness off, draining");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    drain(servers, &services).await;
    admin.stop().await;
    tracing::info!("tollgate stopped");
    Ok(())
}

type Server = tokio::task::JoinHandle<anyhow::Result<()>>;

/// The admin server; it outlives the drain, so probes see readiness go false.
struct Admin {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn start(address: &str, state: AdminState) -> anyhow::Result<Admin> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding admin address {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "admin listening");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(admin::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(Admin { stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the ext_proc gRPC server (with xDS when configured); the receiver gets its
/// bound address once it listens.
fn start_ext_proc(
    ext: &config::ExtProcConfig,
    config: &config::Config,
    store: &Arc<PipelineStore>,
    services: &Services,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(Server, tokio::sync::oneshot::Receiver<String>)> {
    let tls = match (&ext.tls, ext.self_signed_tls) {
        (Some(t), _) => Some(tonic_tls(t)?),
        (None, true) => Some(self_signed_tls()?),
        (None, false) => None,
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(ext_proc::serve(
        ext_proc::GrpcServer {
            store: store.clone(),
            address: ext.address.clone(),
            tls,
            health_address: ext.health_address.clone(),
            grace: config.shutdown.grace_period.get(),
            xds: config.xds.is_some().then(|| services.xds.clone()),
        },
        stopped(stop.clone()),
        ready_tx,
    ));
    Ok((server, ready_rx))
}

/// Binds and serves the proxy's listeners: the MCP listener for Envoy's mcp routes, and
/// every bind unless Envoy serves them over xDS.
async fn start_proxies(
    config: &config::Config,
    store: &Arc<PipelineStore>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Server>> {
    let mut listeners = Vec::new();
    if let Some(address) = crate::config::mcp_listener(config) {
        let listener = proxy::bind_mcp(address).await?;
        tracing::info!(address = %listener.local_addr(), "MCP listener (for Envoy's mcp routes) listening");
        listeners.push(listener);
    }
    for bind in config.binds.iter().filter(|_| config.xds.is_none()) {
        let listener = proxy::bind(bind).await?;
        tracing::info!(address = %listener.local_addr(), "proxy listening");
        listeners.push(listener);
    }
    Ok(listeners
        .into_iter()
        .map(|listener| {
            tokio::spawn(proxy::serve(
                listener,
                store.clone(),
                config.upstream.clone(),
                stopped(stop.clone()),
                config.shutdown.grace_period.get(),
            ))
        })
        .collect())
}

/// Waits for the servers to drain, then up to 5 s for limit settlements in flight.
async fn drain(servers: Vec<Server>, services: &Services) {
    for server in servers {
        match server.await {
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "server stopped with an error")
            }
            Err(e) => tracing::error!(error = %e, "server task failed"),
            Ok(Ok(())) => {}
        }
    }
    if tokio::time::timeout(Duration::from_secs(5), services.drain())
        .await
        .is_err()
    {
        tracing::warn!("limit settlements still in flight after 5s; some true-ups are lost");
    }
}

async fn finish_early(servers: Vec<Server>) -> anyhow::Result<()> {
    for s in servers {
        s.await??;
    }
    anyhow::bail!("a server stopped before it was ready")
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A certificate made now for `localhost` and this host's name: encryption without
/// verification, which is what gateways expect of an endpoint picker by default.
fn self_signed_tls() -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .context("extProc.selfSignedTls: making a certificate")?;
    Ok(
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            certified.cert.pem(),
            certified.signing_key.serialize_pem(),
        )),
    )
}

fn tonic_tls(tls: &config::ServerTls) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let cert = std::fs::read(&tls.cert_file)
        .with_context(|| format!("extProc.tls.certFile: reading {}", tls.cert_file))?;
    let key = std::fs::read(&tls.key_file)
        .with_context(|| format!("extProc.tls.keyFile: reading {}", tls.key_file))?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key)))
}
