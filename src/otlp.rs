//! OTLP trace export with the OpenTelemetry SDK: one tracer provider per `tracing`
//! config (shared across reloads while the config is the same), exporting over gRPC
//! (tonic) or HTTP (protobuf, hyper) in batches from a Tokio task, with a bounded queue
//! (a slow or dead collector drops spans, never delays traffic). The `otel_trace`
//! processor builds the spans.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::{OtlpProtocol, TracingConfig};

/// Spans held for export at most; past it, new spans are dropped.
const MAX_QUEUE: usize = 4096;

/// A running exporter: its provider (flushed when dropped) and the tracer spans are
/// made with.
pub struct Otlp {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Otlp {
    /// Starts the exporter for `config`; must run inside the Tokio runtime.
    pub fn start(config: &TracingConfig) -> Result<Otlp, String> {
        let url = config.export_url();
        let exporter = match config.otlp_protocol {
            OtlpProtocol::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(5))
                .build(),
            OtlpProtocol::Http => SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(5))
                .build(),
        }
        .map_err(|e| format!("OTLP exporter: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUE)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // tollgate decides sampling itself (`otel_trace`): every span it builds goes.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(Resource::builder().with_service_name("tollgate").build())
            .build();
        let tracer = provider.tracer("tollgate");
        Ok(Otlp { provider, tracer })
    }

    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "OTLP exporter shutdown");
        }
    }
}
