//! A scanned line turned into a [`Request`].
//!
//! Invariants: text values are decoded with [`decode`] and `-` or empty means absent; numbers that
//! do not parse become 0; `time` is the timestamp as logged. Nothing the line carried is dropped:
//! variables without a request field become extra fields, and so do `$uri` and `$args` when the
//! target came from `$request` or `$request_uri`.

use crate::accesslog::{request_line, time, xff};
use crate::escape::decode;
use crate::format::{Format, Slot, Var};
use crate::scan::Span;
use logsec_sdk::{Field, Request};
use std::borrow::Cow;

/// Request-line pieces collected from the variables that carry them.
#[derive(Default)]
struct Target<'a> {
    request: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    request_uri: Option<Cow<'a, str>>,
    protocol: Option<Cow<'a, str>>,
    uri: Option<(&'a Slot, Cow<'a, str>)>,
    args: Option<(&'a Slot, Cow<'a, str>)>,
}

/// Builds the request from the values `spans` locate in `line`.
pub fn assemble(format: &Format, line: &str, spans: &[Span]) -> Request {
    let mut request = Request::empty();
    let mut target = Target::default();
    let (mut body_bytes, mut total_bytes) = (None, None);
    for (slot, span) in format.slots.iter().zip(spans) {
        let Some(raw) = span.and_then(|(start, end)| line.get(start..end)) else {
            continue;
        };
        if raw.is_empty() || raw == "-" {
            continue;
        }
        match &slot.var {
            Var::RemoteAddr => request.ip = decode(raw).into_owned(),
            Var::RemoteUser => request.user = decode(raw).into_owned(),
            Var::TimeLocal => set_time(&mut request, raw, time::parse_clf),
            Var::TimeIso8601 => set_time(&mut request, raw, time::parse_iso8601),
            Var::Msec => set_time(&mut request, raw, time::parse_epoch_seconds),
            Var::Request => target.request = Some(decode(raw)),
            Var::RequestMethod => target.method = Some(decode(raw)),
            Var::RequestUri => target.request_uri = Some(decode(raw)),
            Var::ServerProtocol => target.protocol = Some(decode(raw)),
            Var::Uri => target.uri = Some((slot, decode(raw))),
            Var::Args => target.args = Some((slot, decode(raw))),
            Var::Status => request.status = raw.parse().unwrap_or(0),
            Var::BodyBytesSent => body_bytes = raw.parse().ok(),
            Var::BytesSent => total_bytes = raw.parse().ok(),
            Var::Referer => request.referer = decode(raw).into_owned(),
            Var::UserAgent => request.user_agent = decode(raw).into_owned(),
            Var::XForwardedFor => {
                let value = decode(raw).into_owned();
                request.forwarded_for = xff::rightmost_ip(&value);
                push_extra(&mut request, slot, value);
            }
            Var::Other(_) => push_extra(&mut request, slot, decode(raw).into_owned()),
        }
    }
    request.bytes = body_bytes.or(total_bytes).unwrap_or(0);
    set_target(&mut request, target);
    request
}

/// The first timestamp that parses wins; without one, `time` is the first one logged.
fn set_time(request: &mut Request, raw: &str, parse: fn(&str) -> Option<i64>) {
    if request.timestamp_ms.is_some() {
        return;
    }
    let parsed = parse(raw);
    if parsed.is_some() || request.time.is_empty() {
        request.time = raw.to_owned();
        request.timestamp_ms = parsed;
    }
}

fn push_extra(request: &mut Request, slot: &Slot, value: String) {
    request.extra.push(Field {
        name: slot.name.to_string(),
        value,
    });
}

/// Method, target and protocol: explicit variables first, then the split `$request`, then
/// `$uri?$args` for the target.
fn set_target(request: &mut Request, mut target: Target<'_>) {
    let split = target.request.as_deref().map(request_line::split).unwrap_or_default();
    request.method = target.method.as_deref().unwrap_or(split.method).to_owned();
    request.protocol = target.protocol.as_deref().unwrap_or(split.protocol).to_owned();
    request.uri = if let Some(uri) = target.request_uri {
        uri.into_owned()
    } else if !split.uri.is_empty() {
        split.uri.to_owned()
    } else if let Some((_, uri)) = target.uri.take() {
        let mut joined = uri.into_owned();
        if let Some((_, args)) = target.args.take() {
            joined.push('?');
            joined.push_str(&args);
        }
        joined
    } else {
        String::new()
    };
    for (slot, value) in [target.uri, target.args].into_iter().flatten() {
        push_extra(request, slot, value.into_owned());
    }
}
