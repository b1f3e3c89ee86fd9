//! HTTP clients for the analysts: Ollama's `/api/chat` and any OpenAI-compatible
//! `/chat/completions` (Cerebras, llama.cpp, vLLM).
//!
//! Invariants:
//! - Every call has a deadline; retries (429 honouring `Retry-After`, 5xx, transport errors) happen
//!   only while the deadline allows, so a caller never waits longer than its tier's timeout.
//! - API keys go in headers only and never appear in errors or logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Attempts per call (the first and the retries).
const MAX_ATTEMPTS: u32 = 4;
/// Attempts when the connection is refused, and the pause between them: a server that is just
/// starting gets a moment; one that is down costs little (the circuit then opens at once).
const CONNECT_ATTEMPTS: u32 = 2;
const CONNECT_RETRY: Duration = Duration::from_millis(300);
/// First pause after a 5xx or a transport error; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Tokens an OpenAI-compatible server may generate per answer (low values also keep providers'
/// token-per-minute estimates low).
const MAX_COMPLETION_TOKENS: u32 = 600;

/// The API a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Ollama `/api/chat`.
    Ollama,
    /// OpenAI-compatible `/chat/completions`.
    OpenAi,
}

/// One model on one server.
#[derive(Clone)]
pub struct ChatClient {
    provider: Provider,
    base: String,
    model: String,
    api_key: Option<String>,
    keep_alive: String,
    http: reqwest::Client,
    /// The server refused OpenAI's `json_schema` response format and takes the schema as
    /// `{"type": "json_object", "schema": ...}` instead (llama-cpp-python's server).
    schema_in_json_object: Arc<AtomicBool>,
}

/// A tool call the model asked for.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The call's id (OpenAI), echoed in the tool message.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments, parsed.
    pub arguments: Value,
}

/// What the model answered.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The message text (the verdict JSON, when it answered).
    pub content: Option<String>,
    /// Tools it wants called.
    pub tool_calls: Vec<ToolCall>,
    /// The assistant message as the server sent it, to put back into the conversation.
    pub message: Value,
    /// Tokens used (prompt + completion).
    pub tokens: u64,
}

/// Why a call gave no reply.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The deadline passed (including while honouring `Retry-After`).
    #[error("no answer before the deadline")]
    Timeout,
    /// The provider's daily quota is spent; it resets in `reset`.
    #[error("daily quota spent (resets in {0:?})")]
    QuotaSpent(Duration),
    /// An HTTP error that retrying does not cure.
    #[error("HTTP {status}: {message}")]
    Http {
        /// Status code.
        status: u16,
        /// The server's error message.
        message: String,
    },
    /// Nothing accepted the connection.
    #[error("unreachable (connection refused): {0}")]
    Refused(String),
    /// The server could not be reached or broke the connection.
    #[error("unreachable: {0}")]
    Transport(String),
    /// The answer was not the API's shape.
    #[error("malformed answer: {0}")]
    Decode(String),
}

impl ChatClient {
    /// A client for `model` at `base` (`http://127.0.0.1:11434` for Ollama, `…/v1` for OpenAI).
    pub fn new(provider: Provider, base: &str, model: &str, api_key: Option<String>, keep_alive: &str) -> ChatClient {
        ChatClient {
            provider,
            base: base.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key,
            keep_alive: keep_alive.to_owned(),
            schema_in_json_object: Arc::default(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a TLS backend is compiled in"),
        }
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The models the server offers (`GET /models`, OpenAI-compatible servers).
    pub async fn models(&self) -> Result<Vec<String>, ChatError> {
        let mut req = self
            .http
            .get(format!("{}/models", self.base))
            .timeout(Duration::from_secs(15));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| ChatError::Transport(without_url(&e)))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| ChatError::Decode(without_url(&e)))?;
        if !status.is_success() {
            return Err(ChatError::Http {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        Ok(body["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// One chat turn. `schema` constrains the answer (Ollama `format`, OpenAI `response_format`);
    /// `tools` offers functions (OpenAI shape).
    pub async fn chat(
        &self,
        messages: &[Value],
        schema: Option<&Value>,
        tools: Option<&Value>,
        deadline: Instant,
    ) -> Result<Reply, ChatError> {
        let (url, body) = match self.provider {
            Provider::Ollama => {
                let mut body = json!({
                    "model": self.model,
                    "messages": messages,
                    "stream": false,
                    "options": {"temperature": 0},
                    "keep_alive": self.keep_alive,
                });
                if let Some(s) = schema {
                    body["format"] = s.clone();
                }
                if let Some(t) = tools {
                    body["tools"] = t.clone();
                }
                (format!("{}/api/chat", self.base), body)
            }
            Provider::OpenAi => {
                let mut body = json!({
                    "model": self.model,
                    "messages": messages,
                    "temperature": 0,
                    "max_completion_tokens": MAX_COMPLETION_TOKENS,
                });
                if let Some(s) = schema {
                    body["response_format"] = self.response_format(s);
                }
                if let Some(t) = tools {
                    body["tools"] = t.clone();
                    body["tool_choice"] = json!("auto");
                }
                let url = format!("{}/chat/completions", self.base);
                match self.post(&url, &body, deadline).await {
                    // A server that does not know `json_schema` (llama-cpp-python answers a 500
                    // naming `response_format`):
                    // once more with the schema inside `json_object`, and remember.
                    Err(ChatError::Http { status, message })
                        if schema.is_some()
                            && !self.schema_in_json_object.load(Ordering::Relaxed)
                            && (matches!(status, 400 | 422) || message.contains("response_format")) =>
                    {
                        self.schema_in_json_object.store(true, Ordering::Relaxed);
                        body["response_format"] = self.response_format(schema.expect("checked above"));
                        let reply = self.post(&url, &body, deadline).await;
                        if reply.is_err() {
                            self.schema_in_json_object.store(false, Ordering::Relaxed);
                        }
                        return openai_reply(&reply?);
                    }
                    other => return openai_reply(&other?),
                }
            }
        };
        ollama_reply(&self.post(&url, &body, deadline).await?)
    }

    /// OpenAI's strict `json_schema` response format, or the schema inside `json_object` for
    /// servers that only know that form.
    fn response_format(&self, schema: &Value) -> Value {
        if self.schema_in_json_object.load(Ordering::Relaxed) {
            json!({"type": "json_object", "schema": schema})
        } else {
            json!({"type": "json_schema", "json_schema": {"name": "verdict", "strict": true, "schema": schema}})
        }
    }

    /// POSTs `body`, retrying what retrying can cure while `deadline` allows.
    async fn post(&self, url: &str, body: &Value, deadline: Instant) -> Result<Value, ChatError> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ChatError::Timeout);
            }
            let mut req = self.http.post(url).json(body).timeout(left);
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            let wait = match req.send().await {
                Err(e) if e.is_timeout() => return Err(ChatError::Timeout),
                // Nothing listens: one quick retry covers a server (re)starting; beyond that the
                // circuit breaker decides when to try again.
                Err(e) if e.is_connect() => {
                    if attempt >= CONNECT_ATTEMPTS {
                        return Err(ChatError::Refused(without_url(&e)));
                    }
                    CONNECT_RETRY
                }
                Err(e) => {
                    if attempt == MAX_ATTEMPTS {
                        return Err(ChatError::Transport(without_url(&e)));
                    }
                    backoff
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let text = resp.text().await.map_err(|e| ChatError::Transport(without_url(&e)))?;
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if status.is_success() {
                        if value.is_null() {
                            return Err(ChatError::Decode("the body is not JSON".into()));
                        }
                        return Ok(value);
                    }
                    let message = error_message(&value);
                    if status.as_u16() == 429 {
                        if let Some(reset) = daily_quota_spent(&headers) {
                            return Err(ChatError::QuotaSpent(reset));
                        }
                        retry_after(&headers).unwrap_or(backoff)
                    } else if status.is_server_error() && attempt < MAX_ATTEMPTS && !message.contains("response_format")
                    {
                        backoff
                    } else {
                        return Err(ChatError::Http {
                            status: status.as_u16(),
                            message,
                        });
                    }
                }
            };
            if Instant::now() + wait >= deadline {
                return Err(ChatError::Timeout);
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "analyst call retried");
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
        Err(ChatError::Timeout)
    }
}

fn ollama_reply(body: &Value) -> Result<Reply, ChatError> {
    let message = body
        .get("message")
        .ok_or_else(|| ChatError::Decode("no message".into()))?;
    let tokens = body["prompt_eval_count"].as_u64().unwrap_or(0) + body["eval_count"].as_u64().unwrap_or(0);
    Ok(reply(message, tokens))
}

fn openai_reply(body: &Value) -> Result<Reply, ChatError> {
    let message = body["choices"]
        .get(0)
        .and_then(|c| c.get("message"))
        .ok_or_else(|| ChatError::Decode("no choices[0].message".into()))?;
    Ok(reply(message, body["usage"]["total_tokens"].as_u64().unwrap_or(0)))
}

/// An assistant `message` of either API. Tool calls differ in two ways: OpenAI gives each an `id`
/// and its arguments as a JSON string; Ollama gives no id and the arguments as an object.
fn reply(message: &Value, tokens: u64) -> Reply {
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let arguments = &c["function"]["arguments"];
                    ToolCall {
                        id: c["id"].as_str().map_or_else(|| format!("call_{i}"), str::to_owned),
                        name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: match arguments.as_str() {
                            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                            None => arguments.clone(),
                        },
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Reply {
        content: message["content"].as_str().map(str::to_owned),
        tool_calls,
        message: message.clone(),
        tokens,
    }
}

/// The error text of an Ollama (`{"error": "..."}`) or OpenAI (`{"error": {"message": ...}}`) body.
fn error_message(body: &Value) -> String {
    let m = match &body["error"] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    super::verdict::clean(&m)
}

/// `Retry-After` in seconds (the form providers use), capped at a minute.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(60.0)))
}

/// When a 429 says the day's requests are spent (Cerebras' `x-ratelimit-remaining-requests-day`
/// is 0), how long until they reset.
fn daily_quota_spent(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| -> Option<f64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if get("x-ratelimit-remaining-requests-day")? > 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        get("x-ratelimit-reset-requests-day")
            .unwrap_or(3600.0)
            .clamp(1.0, 86_400.0),
    ))
}

/// A reqwest error's text without the URL (which could carry a key in a query string).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}
