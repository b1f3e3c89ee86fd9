//! nginx `log_format` strings compiled into literal text and the variables between it.
//!
//! Invariants of a compiled [`Format`]: it has at least one variable and at most
//! [`MAX_VARIABLES`]; two variables are always separated by non-empty literal text (otherwise no
//! scanner could tell where one ends), so only the last slot may have an empty terminator.

/// The most variables a format may hold; bounds the scanner's recursion depth.
pub const MAX_VARIABLES: usize = 64;

/// Apache's `common` format.
pub const COMMON: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent"#;

/// The `main` format of nginx's stock configuration: `combined` plus the X-Forwarded-For header.
pub const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

/// What a variable's value becomes in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Status,
    BodyBytesSent,
    BytesSent,
    Referer,
    UserAgent,
    XForwardedFor,
    /// Any other variable; kept as an extra field under this name.
    Other(Box<str>),
}

impl Var {
    fn from_name(name: &str) -> Var {
        match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_user" => Var::RemoteUser,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "msec" => Var::Msec,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "server_protocol" => Var::ServerProtocol,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "http_referer" => Var::Referer,
            "http_user_agent" => Var::UserAgent,
            "http_x_forwarded_for" => Var::XForwardedFor,
            other => Var::Other(other.into()),
        }
    }

    /// Whether the request target is in this variable, so a line may end inside or after it.
    fn carries_request(&self) -> bool {
        matches!(self, Var::Request | Var::RequestUri | Var::Uri)
    }
}

/// One variable of a format and the literal text that follows it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The variable as written, without `$`; used in messages and as the extra field's name.
    pub name: Box<str>,
    /// What the value becomes.
    pub var: Var,
    /// The literal text after the variable; empty only for the last slot.
    pub terminator: Box<[u8]>,
    /// The variable sits between double quotes, so its end is the first unescaped `"`.
    pub quoted: bool,
}

/// A compiled log format.
#[derive(Debug, Clone)]
pub struct Format {
    /// Literal text before the first variable.
    pub prefix: Box<[u8]>,
    /// The variables in order.
    pub slots: Vec<Slot>,
    /// Index of the first slot in or after which a line may end early (the request); later slots
    /// are then absent. Equal to `slots.len()` when the format has no request variable.
    pub truncate_from: usize,
    /// Whether text after the last slot is ignored instead of making the line invalid.
    pub trailing: bool,
    /// Whether this is the built-in `combined`/`main` layout, which `fast::scan_main` reads.
    pub main_layout: bool,
}

impl Default for Format {
    /// `combined`, tolerating the `main` format's X-Forwarded-For field, Apache `common` lines and
    /// further fields appended by local formats.
    fn default() -> Self {
        Format::named("combined").expect("the built-in format compiles")
    }
}

impl Format {
    /// One of the built-in formats: `combined` (also reads `main` and `common` lines), `main` (the
    /// same) or `common`. Built-in formats ignore text after their last field.
    pub fn named(name: &str) -> Result<Format, String> {
        let text = match name {
            "combined" | "main" => MAIN,
            "common" => COMMON,
            other => return Err(format!("unknown format {other:?}; use combined, main or common")),
        };
        let mut format = Format::compile(text)?;
        format.trailing = true;
        format.main_layout = text == MAIN;
        // Fields a local format appends to `common` start after a space.
        if let Some(last) = format.slots.last_mut()
            && last.terminator.is_empty()
        {
            last.terminator = Box::from(*b" ");
        }
        Ok(format)
    }

    /// Compiles an nginx `log_format` string (`$name` or `${name}` variables, literal text between).
    pub fn compile(text: &str) -> Result<Format, String> {
        let mut prefix: Option<Box<[u8]>> = None;
        let mut slots: Vec<Slot> = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let (name, after) = variable_name(&rest[dollar + 1..]).ok_or_else(|| {
                format!(
                    "log_format: `$` at byte {} starts no variable name",
                    text.len() - rest.len() + dollar
                )
            })?;
            match slots.last_mut() {
                None => prefix = Some(literal.as_bytes().into()),
                Some(previous) if literal.is_empty() => {
                    return Err(format!(
                        "log_format: ${} and ${name} need literal text between them",
                        previous.name
                    ));
                }
                Some(previous) => previous.terminator = literal.as_bytes().into(),
            }
            let quoted = literal.ends_with('"');
            slots.push(Slot {
                name: name.into(),
                var: Var::from_name(name),
                terminator: Box::new([]),
                quoted,
            });
            literal.clear();
            rest = after;
        }
        literal.push_str(rest);
        if slots.len() > MAX_VARIABLES {
            return Err(format!(
                "log_format has {} variables; at most {MAX_VARIABLES} are supported",
                slots.len()
            ));
        }
        let Some(last) = slots.last_mut() else {
            return Err("log_format has no variables".to_owned());
        };
        last.terminator = literal.as_bytes().into();
        for slot in &mut slots {
            slot.quoted &= slot.terminator.first() == Some(&b'"');
        }
        let truncate_from = slots
            .iter()
            .position(|s| s.var.carries_request())
            .unwrap_or(slots.len());
        Ok(Format {
            prefix: prefix.unwrap_or_default(),
            slots,
            truncate_from,
            trailing: false,
            main_layout: false,
        })
    }
}

/// The variable name at the start of `s` (after `$`) and the text after it: `name` or `{name}`,
/// where a name is ASCII letters, digits and `_`.
fn variable_name(s: &str) -> Option<(&str, &str)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(braced) = s.strip_prefix('{') {
        let (name, after) = braced.split_once('}')?;
        return (!name.is_empty() && name.chars().all(is_name)).then_some((name, after));
    }
    let end = s.find(|c: char| !is_name(c)).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_main() {
        let f = Format::compile(MAIN).unwrap();
        assert!(f.prefix.is_empty());
        let names: Vec<_> = f.slots.iter().map(|s| &*s.name).collect();
        assert_eq!(
            names,
            [
                "remote_addr",
                "remote_user",
                "time_local",
                "request",
                "status",
                "body_bytes_sent",
                "http_referer",
                "http_user_agent",
                "http_x_forwarded_for"
            ]
        );
        assert_eq!(&*f.slots[0].terminator, b" - ");
        assert_eq!(&*f.slots[2].terminator, b"] \"");
        assert_eq!(&*f.slots[7].terminator, b"\" \"");
        assert_eq!(&*f.slots[8].terminator, b"\"");
        let quoted: Vec<_> = f.slots.iter().map(|s| s.quoted).collect();
        assert_eq!(quoted, [false, false, false, true, false, false, true, true, true]);
        assert_eq!(f.truncate_from, 3);
        assert!(!f.trailing);
    }

    #[test]
    fn braces_prefix_and_other_variables() {
        let f = Format::compile(r#"[${time_local}] "$host" ${remote_addr}x"#).unwrap();
        assert_eq!(&*f.prefix, b"[");
        assert_eq!(f.slots[1].var, Var::Other("host".into()));
        assert!(f.slots[1].quoted);
        assert_eq!(&*f.slots[2].terminator, b"x");
        assert_eq!(f.truncate_from, 3);
    }

    #[test]
    fn quoted_first_variable() {
        let f = Format::compile(r#""$request" $status"#).unwrap();
        assert!(f.slots[0].quoted);
    }

    #[test]
    fn rejects_bad_formats() {
        assert!(Format::compile("").unwrap_err().contains("no variables"));
        assert!(Format::compile("plain text").unwrap_err().contains("no variables"));
        assert!(
            Format::compile("$remote_addr$status")
                .unwrap_err()
                .contains("literal text between")
        );
        assert!(Format::compile("$remote_addr $").unwrap_err().contains("byte 13"));
        assert!(Format::compile("${remote_addr").is_err());
        assert!(Format::compile("${}").is_err());
        assert!(
            Format::compile(&"$a ".repeat(MAX_VARIABLES + 1))
                .unwrap_err()
                .contains("at most")
        );
        assert!(Format::named("nope").unwrap_err().contains("unknown format"));
    }
}
