//! A JSON object turned into a [`Request`].
//!
//! Invariants: `-`, empty strings and `null` count as absent; control characters in strings are
//! written as `%HH`; numbers may arrive as JSON numbers or as strings, and those that do not fit
//! become 0; `time` is the timestamp as logged. Top-level scalar keys that fed no request field
//! become extra fields (in key order), so nothing is lost. An object in which no address, method,
//! target or status was found is not a request.

use crate::accesslog::bytes::push_percent;
use crate::accesslog::{request_line, time, xff};
use crate::fields::{FieldMap, Target, lookup};
use logsec_sdk::{Field, Request};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// Epoch numbers with more integer digits than this are milliseconds, not seconds (12 digits of
/// seconds would be past the year 5000; 12 digits of milliseconds is 1973).
const MAX_EPOCH_SECOND_DIGITS: usize = 11;

/// Reads the fields of `object` that `fields` maps, remembering which top-level keys it used.
struct Reader<'v> {
    object: &'v Map<String, Value>,
    fields: &'v FieldMap,
    used: Vec<&'v str>,
}

impl<'v> Reader<'v> {
    /// The first usable value among `target`'s paths, with the path it came from.
    fn value(&mut self, target: Target) -> Option<(&'v str, &'v Value)> {
        for path in self.fields.paths(target) {
            if let Some((key, _)) = self.object.get_key_value(&**path) {
                self.used.push(key.as_str());
            }
            match lookup(self.object, path) {
                Some(value) if text(value).is_some() => return Some((path, value)),
                _ => continue,
            }
        }
        None
    }

    fn text(&mut self, target: Target) -> Option<Cow<'v, str>> {
        self.value(target).and_then(|(_, value)| text(value))
    }
}

/// A scalar as text; `None` for absent values, objects and arrays.
fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(without_controls(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// `s` with control characters (which JSON strings may carry as `\u0000`-style escapes) written
/// as `%HH`, the way the nginx parser writes them, so detectors see one form whatever the log format.
fn without_controls(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match u8::try_from(c) {
            Ok(byte) if byte < 0x20 || byte == 0x7f => push_percent(&mut out, byte),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A non-negative integer from a JSON number (integral floats too) or a decimal string.
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| whole_float(n)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn whole_float(n: &Number) -> Option<u64> {
    let f = n.as_f64()?;
    // u64::MAX as f64 rounds up, so `<` keeps the cast in range.
    (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// Unix milliseconds from a logged timestamp: CLF, ISO 8601, or epoch seconds or milliseconds.
fn timestamp_ms(logged: &str) -> Option<i64> {
    let logged = logged.trim();
    if let Some(ms) = time::parse_clf(logged).or_else(|| time::parse_iso8601(logged)) {
        return Some(ms);
    }
    let whole = logged.split('.').next().unwrap_or_default();
    if whole.len() > MAX_EPOCH_SECOND_DIGITS && whole.len() <= 18 && logged.bytes().all(|c| c.is_ascii_digit()) {
        return whole.parse().ok();
    }
    time::parse_epoch_seconds(logged)
}

/// Builds the request `fields` finds in `object`; `None` when it holds no address, method, target
/// or status.
pub fn to_request(object: &Map<String, Value>, fields: &FieldMap) -> Option<Request> {
    let mut reader = Reader {
        object,
        fields,
        used: Vec::new(),
    };
    let mut request = Request::empty();
    let own = |t: Option<Cow<'_, str>>| t.map(Cow::into_owned).unwrap_or_default();
    request.ip = own(reader.text(Target::Ip));
    request.user = own(reader.text(Target::User));
    if let Some(logged) = reader.text(Target::Time) {
        request.timestamp_ms = timestamp_ms(&logged);
        request.time = logged.into_owned();
    }
    let line = reader.text(Target::Request);
    let split = line.as_deref().map(request_line::split).unwrap_or_default();
    request.method = reader
        .text(Target::Method)
        .map_or_else(|| split.method.to_owned(), Cow::into_owned);
    request.uri = reader
        .text(Target::Uri)
        .map_or_else(|| split.uri.to_owned(), Cow::into_owned);
    request.protocol = match reader.text(Target::Protocol) {
        Some(p) if p.starts_with(|c: char| c.is_ascii_digit()) => format!("HTTP/{p}"),
        Some(p) => p.into_owned(),
        None => split.protocol.to_owned(),
    };
    request.status = reader
        .value(Target::Status)
        .and_then(|(_, v)| unsigned(v))
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    request.bytes = reader.value(Target::Bytes).and_then(|(_, v)| unsigned(v)).unwrap_or(0);
    request.referer = own(reader.text(Target::Referer));
    request.user_agent = own(reader.text(Target::UserAgent));
    if let Some((path, value)) = reader.value(Target::ForwardedFor) {
        let header = text(value).map(Cow::into_owned).unwrap_or_default();
        request.forwarded_for = xff::rightmost_ip(&header);
        request.extra.push(Field {
            name: path.to_owned(),
            value: header,
        });
    }
    if request.ip.is_empty() && request.method.is_empty() && request.uri.is_empty() && request.status == 0 {
        return None;
    }
    for (key, value) in object {
        if reader.used.contains(&key.as_str()) {
            continue;
        }
        if let Some(value) = text(value) {
            request.extra.push(Field {
                name: key.clone(),
                value: value.into_owned(),
            });
        }
    }
    Some(request)
}
