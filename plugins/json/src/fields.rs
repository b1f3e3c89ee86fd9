//! Which JSON keys fill which request field, and how a key path is looked up.
//!
//! Every request field has a list of key paths tried in order; the first that holds a usable value
//! wins. A path is a top-level key as written (`@timestamp`, or `source.ip` in documents that
//! flatten objects) or a dotted path through nested objects (`http.request.method`). Invariant: paths
//! are non-empty and have at most [`MAX_DOTS`] dots, which bounds the work of one lookup.

use serde_json::{Map, Value};

/// The most dots a key path may have; each dot may separate objects or belong to a key, so a
/// lookup tries at most 2^MAX_DOTS ways of reading the path on adversarial documents.
pub const MAX_DOTS: usize = 8;

/// A request field that JSON keys can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Ip,
    ForwardedFor,
    User,
    Time,
    Request,
    Method,
    Uri,
    Protocol,
    Status,
    Bytes,
    Referer,
    UserAgent,
}

impl Target {
    /// Every target, in declaration order, so `target as usize` indexes this array.
    pub const ALL: [Target; 12] = [
        Target::Ip,
        Target::ForwardedFor,
        Target::User,
        Target::Time,
        Target::Request,
        Target::Method,
        Target::Uri,
        Target::Protocol,
        Target::Status,
        Target::Bytes,
        Target::Referer,
        Target::UserAgent,
    ];

    /// The name operators use in `{"fields": {...}}`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ip => "ip",
            Target::ForwardedFor => "forwarded_for",
            Target::User => "user",
            Target::Time => "time",
            Target::Request => "request",
            Target::Method => "method",
            Target::Uri => "uri",
            Target::Protocol => "protocol",
            Target::Status => "status",
            Target::Bytes => "bytes",
            Target::Referer => "referer",
            Target::UserAgent => "user_agent",
        }
    }

    /// Paths tried when the operator names none: nginx `escape=json` variable names first, then
    /// Elastic Common Schema, then common short names.
    fn defaults(self) -> &'static [&'static str] {
        match self {
            Target::Ip => &["remote_addr", "source.ip", "client.ip", "client_ip", "ip"],
            Target::ForwardedFor => &["http_x_forwarded_for", "x_forwarded_for"],
            Target::User => &["remote_user", "user.name"],
            Target::Time => &["time_local", "time_iso8601", "@timestamp", "timestamp", "time", "msec"],
            Target::Request => &["request"],
            Target::Method => &["request_method", "http.request.method", "method"],
            Target::Uri => &["request_uri", "url.original"],
            Target::Protocol => &["server_protocol", "http.version", "protocol"],
            Target::Status => &["status", "http.response.status_code", "status_code"],
            Target::Bytes => &["body_bytes_sent", "http.response.body.bytes", "bytes_sent", "bytes"],
            Target::Referer => &["http_referer", "http.request.referrer", "referer", "referrer"],
            Target::UserAgent => &["http_user_agent", "user_agent.original", "user_agent"],
        }
    }
}

/// For every target, the key paths tried in order.
#[derive(Debug, Clone)]
pub struct FieldMap {
    paths: Vec<Vec<Box<str>>>,
}

impl Default for FieldMap {
    fn default() -> Self {
        let paths = Target::ALL
            .iter()
            .map(|t| t.defaults().iter().map(|p| Box::from(*p)).collect())
            .collect();
        FieldMap { paths }
    }
}

impl FieldMap {
    /// The defaults, with the targets named in `fields` (the operator's `fields` object) replaced
    /// by the path or list of paths given there.
    pub fn with_overrides(fields: &Map<String, Value>) -> Result<FieldMap, String> {
        let mut map = FieldMap::default();
        for (name, paths) in fields {
            let Some(index) = Target::ALL.iter().position(|t| t.name() == name) else {
                let known: Vec<_> = Target::ALL.iter().map(|t| t.name()).collect();
                return Err(format!("unknown field {name:?}; known: {}", known.join(", ")));
            };
            let list = match paths {
                Value::String(path) => vec![path.as_str()],
                Value::Array(items) => items
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if list.is_empty() {
                return Err(format!(
                    "fields.{name} must be a key path or a non-empty list of key paths"
                ));
            }
            if let Some(bad) = list.iter().find(|p| p.is_empty() || p.matches('.').count() > MAX_DOTS) {
                return Err(format!(
                    "fields.{name}: {bad:?} is not a key path (non-empty, at most {MAX_DOTS} dots)"
                ));
            }
            map.paths[index] = list.into_iter().map(Box::from).collect();
        }
        Ok(map)
    }

    /// The paths tried for `target`, in order.
    pub fn paths(&self, target: Target) -> &[Box<str>] {
        &self.paths[target as usize]
    }
}

/// The value at `path` in `object`: the key as written, or else the path read through nested
/// objects, any dot of which may also be part of a key.
pub fn lookup<'v>(object: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    path.match_indices('.')
        .find_map(|(dot, _)| match object.get(&path[..dot]) {
            Some(Value::Object(inner)) => lookup(inner, &path[dot + 1..]),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn lookup_reads_flat_nested_and_mixed_keys() {
        let doc = object(json!({
            "source.ip": "192.0.2.1",
            "http": {"request": {"method": "GET"}, "response.status_code": 200},
            "@timestamp": "x"
        }));
        assert_eq!(lookup(&doc, "source.ip"), Some(&json!("192.0.2.1")));
        assert_eq!(lookup(&doc, "http.request.method"), Some(&json!("GET")));
        assert_eq!(lookup(&doc, "http.response.status_code"), Some(&json!(200)));
        assert_eq!(lookup(&doc, "@timestamp"), Some(&json!("x")));
        assert_eq!(lookup(&doc, "http.request.nope"), None);
        assert_eq!(lookup(&doc, "http.request.method.deeper"), None);
    }

    #[test]
    fn overrides_replace_defaults_per_target() {
        let fields = object(json!({"ip": "client", "uri": ["path", "url.full"]}));
        let map = FieldMap::with_overrides(&fields).unwrap();
        assert_eq!(map.paths(Target::Ip), [Box::from("client")]);
        assert_eq!(map.paths(Target::Uri).len(), 2);
        assert_eq!(map.paths(Target::Status)[0].as_ref(), "status");
    }

    #[test]
    fn bad_overrides_are_explained() {
        let err = |v: Value| FieldMap::with_overrides(&object(v)).unwrap_err();
        assert!(err(json!({"addr": "x"})).contains("unknown field \"addr\""));
        assert!(err(json!({"ip": 5})).contains("fields.ip"));
        assert!(err(json!({"ip": []})).contains("fields.ip"));
        assert!(err(json!({"ip": ["a", 1]})).contains("fields.ip"));
        assert!(err(json!({"ip": ""})).contains("not a key path"));
        assert!(err(json!({"ip": "a.b.c.d.e.f.g.h.i.j"})).contains("at most 8 dots"));
    }
}
