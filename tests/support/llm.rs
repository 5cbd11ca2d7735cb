//! Token-accounting support: tollgate's config with an OpenAI and an Anthropic route,
//! the usage each request should end up with, the official Python SDKs as clients
//! (`tests/sdk/*.py`, run with the repo's `.venv/bin/python`), and readers for the
//! three places usage is exported — `/metrics`, tollgate's JSON access log, Envoy's
//! access log of dynamic metadata.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::envoy::INSTALL;
use super::scenario::Ports;
use super::tollgate::Tollgate;
use super::upstream::MockUsage;
use super::{eventually, repo_root};

/// The `io.envoy.ai_gateway` keys tollgate's config writes, with their cost types.
/// Envoy's access log (`support::envoy`) prints each as `md_<key>`.
pub const METADATA: &[(&str, &str)] = &[
    ("llm_input_token", "InputToken"),
    ("llm_output_token", "OutputToken"),
    ("llm_total_token", "TotalToken"),
    ("llm_cached_input_token", "CachedInputToken"),
    ("llm_cache_creation_input_token", "CacheCreationInputToken"),
    ("llm_reasoning_token", "ReasoningToken"),
    ("llm_weighted_token", "CEL"),
];

/// The CEL entry's expression: input plus output tokens weighted by model (Anthropic's
/// five, others four), so the `model` variable is checked too.
const WEIGHTED: &str = "input_tokens + output_tokens * (model.startsWith('claude') ? 5u : 4u)";

/// tollgate's config (all but `admin`): ext_proc and the proxy, JSON logs, an `openai`
/// route for `/v1/chat/completions` and an `anthropic` route for `/v1/messages`, both
/// with `tokenAccounting` writing every entry of [`METADATA`].
pub fn config(ports: Ports, upstream: u16) -> String {
    let metadata: String = METADATA
        .iter()
        .map(|(key, kind)| match *kind {
            "CEL" => format!("\n          - {{ key: {key}, type: CEL, cel: \"{WEIGHTED}\" }}"),
            _ => format!("\n          - {{ key: {key}, type: {kind} }}"),
        })
        .collect();
    format!(
        r#"extProc:
  address: "127.0.0.1:{ext_proc}"
logging: {{ format: json }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - name: llm
    routes:
    - name: openai
      matches: [ {{ path: {{ pathPrefix: /v1/chat/completions }}, method: POST }} ]
      policies:
        tokenAccounting:
          metadata:{metadata}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: anthropic
      matches: [ {{ path: {{ pathPrefix: /v1/messages }}, method: POST }} ]
      policies:
        tokenAccounting:
          metadata:{metadata}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// Which API a case speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    pub fn route(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }
}

/// One request through an SDK: what it asks for, and the usage the mock reports.
#[derive(Clone, Debug)]
pub struct Case {
    /// `x-test-id`, and the model name — unique, so each case has metric series of its
    /// own.
    pub id: String,
    pub api: Api,
    pub stream: bool,
    /// OpenAI streams: `stream_options.include_usage` as the client sends it.
    pub include_usage: Option<bool>,
    pub usage: MockUsage,
    /// Content events of a stream.
    pub events: u64,
}

impl Case {
    pub fn model(&self) -> &str {
        &self.id
    }

    /// The `x-mock-*` headers that make the mock report `usage`.
    pub fn mock_headers(&self) -> Value {
        let u = &self.usage;
        let mut h = json!({
            "x-test-id": self.id,
            "x-mock-events": self.events.to_string(),
            "x-mock-interval-ms": "5",
        });
        let counts = match self.api {
            Api::OpenAi => [
                ("x-mock-prompt-tokens", u.input),
                ("x-mock-completion-tokens", u.output),
                ("x-mock-cached-tokens", u.cached),
                ("x-mock-reasoning-tokens", u.reasoning),
            ],
            Api::Anthropic => [
                ("x-mock-input-tokens", u.input),
                ("x-mock-output-tokens", u.output),
                ("x-mock-cache-read-tokens", u.cached),
                ("x-mock-cache-creation-tokens", u.cache_creation),
            ],
        };
        for (name, n) in counts {
            h[name] = n.to_string().into();
        }
        h
    }

    /// The job for the SDK script against `base` (`http://127.0.0.1:PORT`).
    pub fn job(&self, base: &str) -> Value {
        let mut job = json!({
            "base_url": match self.api {
                Api::OpenAi => format!("{base}/v1"),
                Api::Anthropic => base.to_string(),
            },
            "model": self.model(),
            "prompt": format!("Count to {} for {}.", self.events, self.id),
            "stream": self.stream,
            "headers": self.mock_headers(),
        });
        if let Some(v) = self.include_usage {
            job["include_usage"] = v.into();
        }
        job
    }

    /// The usage tollgate should export, normalized as `llm::Usage` documents:
    /// Anthropic's cache reads and writes count as input too.
    pub fn expected(&self) -> Expected {
        let u = &self.usage;
        let input = match self.api {
            Api::OpenAi => u.input,
            Api::Anthropic => u.input + u.cached + u.cache_creation,
        };
        Expected {
            input,
            output: u.output,
            cached_input: u.cached,
            cache_creation_input: u.cache_creation,
            reasoning: u.reasoning,
            total: input + u.output,
            output_weight: match self.api {
                Api::OpenAi => 4,
                Api::Anthropic => 5,
            },
        }
    }

    /// The text a stream delivers.
    pub fn streamed_text(&self) -> String {
        (0..self.events).map(|i| format!("token{i} ")).collect()
    }
}

/// Exported usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_creation_input: u64,
    pub reasoning: u64,
    pub total: u64,
    /// The CEL entry's weight of an output token for this model.
    pub output_weight: u64,
}

impl Expected {
    /// `gen_ai_token_type` → count; the optional types only when non-zero (tollgate
    /// observes them only then).
    pub fn by_token_type(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![("input", self.input), ("output", self.output)];
        for (kind, n) in [
            ("cached_input", self.cached_input),
            ("cache_creation_input", self.cache_creation_input),
            ("reasoning", self.reasoning),
        ] {
            if n > 0 {
                out.push((kind, n));
            }
        }
        out
    }

    /// The value of each [`METADATA`] key.
    pub fn metadata(&self) -> Vec<(&'static str, u64)> {
        METADATA
            .iter()
            .map(|(key, kind)| {
                let v = match *kind {
                    "InputToken" => self.input,
                    "OutputToken" => self.output,
                    "TotalToken" => self.total,
                    "CachedInputToken" => self.cached_input,
                    "CacheCreationInputToken" => self.cache_creation_input,
                    "ReasoningToken" => self.reasoning,
                    "CEL" => self.input + self.output * self.output_weight,
                    other => unreachable!("cost type {other}"),
                };
                (*key, v)
            })
            .collect()
    }
}

/// The SDK cases of one surface: every id starts with `tag`. Each has different counts
/// so that no value can be right by accident.
pub fn sdk_cases(tag: &str) -> Vec<Case> {
    let openai = |n: u64, name: &str, stream: bool, include_usage: Option<bool>| Case {
        id: format!("gpt-{tag}-{name}"),
        api: Api::OpenAi,
        stream,
        include_usage,
        usage: MockUsage {
            input: 100 + n,
            output: 20 + n,
            cached: 30 + n,
            cache_creation: 0,
            reasoning: 5 + n,
        },
        events: 4,
    };
    let anthropic = |n: u64, name: &str, stream: bool| Case {
        id: format!("claude-{tag}-{name}"),
        api: Api::Anthropic,
        stream,
        include_usage: None,
        usage: MockUsage {
            input: 200 + n,
            output: 40 + n,
            cached: 1000 + n,
            cache_creation: 300 + n,
            reasoning: 0,
        },
        events: 4,
    };
    vec![
        openai(1, "json", false, None),
        openai(2, "stream", true, None),
        openai(3, "stream-usage", true, Some(true)),
        openai(4, "stream-no-usage", true, Some(false)),
        anthropic(5, "json", false),
        anthropic(6, "stream", true),
    ]
}

/// The repo's Python (with the SDKs from tests/requirements.txt).
pub fn python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `{INSTALL}`",
        python.display()
    );
    python
}

/// Runs `tests/sdk/<script> --jobs -` with `jobs` on stdin in one Python process (the
/// SDK import costs a second or more) and returns its results, in order.
pub async fn run_sdk(script: &str, jobs: Vec<Value>) -> Vec<Value> {
    run_sdk_with(python(), script, jobs).await
}

/// [`run_sdk`] with the interpreter `python` (another venv's).
pub async fn run_sdk_with(python: PathBuf, script: &str, jobs: Vec<Value>) -> Vec<Value> {
    let script = repo_root().join("tests/sdk").join(script);
    let mut command = Command::new(python);
    command.arg(&script).args(["--jobs", "-"]);
    run_jobs(command, jobs).await
}

/// Runs `command`, a client that reads a JSON list of jobs on stdin and prints a JSON
/// list of results; the results, one per job.
pub async fn run_jobs(mut command: Command, jobs: Vec<Value>) -> Vec<Value> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let script = command.get_program().to_string_lossy().into_owned();
    let input = serde_json::to_vec(&jobs).unwrap();
    let n = jobs.len();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&input)
            .expect("writing the jobs");
        child
            .wait_with_output()
            .expect("waiting for the SDK script")
    })
    .await
    .expect("the SDK runner panicked");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the SDK script printed no JSON list ({e}): {stdout}"));
    assert_eq!(results.len(), n, "{stdout}");
    results
}

/// Runs every case through its SDK against `base` (both SDKs at once); the results in
/// the cases' order.
pub async fn run_cases(cases: &[Case], base: &str) -> Vec<Value> {
    let jobs = |api: Api| -> Vec<Value> {
        cases
            .iter()
            .filter(|c| c.api == api)
            .map(|c| c.job(base))
            .collect()
    };
    let (openai, anthropic) = tokio::join!(
        run_sdk("openai_client.py", jobs(Api::OpenAi)),
        run_sdk("anthropic_client.py", jobs(Api::Anthropic)),
    );
    let (mut openai, mut anthropic) = (openai.into_iter(), anthropic.into_iter());
    cases
        .iter()
        .map(|c| match c.api {
            Api::OpenAi => openai.next().unwrap(),
            Api::Anthropic => anthropic.next().unwrap(),
        })
        .collect()
}

/// One Prometheus sample: its labels and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of metric `name` (exact, e.g. `gen_ai_client_token_usage_sum`).
pub fn samples(metrics: &str, name: &str) -> Vec<Sample> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (metric == name).then_some(())?;
            Some(Sample {
                labels: parse_labels(labels),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// `a="x",b="y"` → map (values here never hold `",`).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split("\",")
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once("=\"")?;
            Some((k.to_string(), v.trim_end_matches('"').to_string()))
        })
        .collect()
}

/// The samples of `name` whose labels include every pair of `want`.
pub fn matching(metrics: &str, name: &str, want: &[(&str, &str)]) -> Vec<Sample> {
    samples(metrics, name)
        .into_iter()
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// `gen_ai_client_token_usage` of a case's model: token type → (sum, count).
pub fn token_usage(metrics: &str, model: &str) -> BTreeMap<String, (f64, f64)> {
    let by_type = |suffix: &str| -> BTreeMap<String, f64> {
        matching(
            metrics,
            &format!("gen_ai_client_token_usage_{suffix}"),
            &[("gen_ai_request_model", model)],
        )
        .into_iter()
        .map(|s| (s.labels["gen_ai_token_type"].clone(), s.value))
        .collect()
    };
    let counts = by_type("count");
    by_type("sum")
        .into_iter()
        .map(|(k, sum)| {
            let count = counts.get(&k).copied().unwrap_or(-1.0);
            (k, (sum, count))
        })
        .collect()
}

/// Waits until `/metrics` shows usage for `model`, and returns the text.
pub async fn metrics_with(tollgate: &Tollgate, model: &str) -> String {
    eventually(
        &format!("token usage metrics of {model}"),
        Duration::from_secs(10),
        || async {
            let m = tollgate.metrics().await;
            (!token_usage(&m, model).is_empty()).then_some(m)
        },
    )
    .await
}

/// tollgate's JSON access line for the request of `model`.
pub async fn access_line(tollgate: &Tollgate, model: &str) -> Value {
    eventually(
        &format!("tollgate's access line for {model}"),
        Duration::from_secs(10),
        || async {
            tollgate
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["target"] == "tollgate::access" && v["llm.request_model"] == model)
        },
    )
    .await
}

/// A number in a JSON log field, however it was written (`12`, `12.0`, `"12"`).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
