//! The unusual encodings decoding can report.

/// Unusual encodings seen while decoding one input. Clients never produce most of these; attack
/// tools do. The detector reports them as the `encoding` field so rules can score them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Anomalies(u8);

impl Anomalies {
    /// An overlong UTF-8 sequence (`%c0%ae`) or a malformed one with an overlong lead byte.
    pub const OVERLONG_UTF8: Anomalies = Anomalies(1);
    /// Percent-decoding changed the text in a second or later pass (`%252e`).
    pub const MULTI_ENCODED: Anomalies = Anomalies(1 << 1);
    /// A NUL byte (`%00`, `&#0;`, `\x00`).
    pub const NULL_BYTE: Anomalies = Anomalies(1 << 2);
    /// Bytes that are not UTF-8 after decoding.
    pub const INVALID_UTF8: Anomalies = Anomalies(1 << 3);
    /// An IIS-style `%uXXXX` escape.
    pub const PERCENT_U: Anomalies = Anomalies(1 << 4);
    /// A decoded line break (CR or LF) inside the value.
    pub const LINE_BREAK: Anomalies = Anomalies(1 << 5);
    /// `<` or `>` written as an HTML entity or JavaScript escape (`&#60;`, `\x3c`): markup hidden
    /// from filters that look for the bracket itself.
    pub const ENCODED_MARKUP: Anomalies = Anomalies(1 << 6);

    const NAMES: [(Anomalies, &'static str); 7] = [
        (Anomalies::OVERLONG_UTF8, "overlong-utf8"),
        (Anomalies::MULTI_ENCODED, "multi-encoded"),
        (Anomalies::NULL_BYTE, "null-byte"),
        (Anomalies::INVALID_UTF8, "invalid-utf8"),
        (Anomalies::PERCENT_U, "percent-u"),
        (Anomalies::LINE_BREAK, "line-break"),
        (Anomalies::ENCODED_MARKUP, "encoded-markup"),
    ];

    /// No anomaly.
    pub const fn none() -> Self {
        Anomalies(0)
    }

    /// Whether every anomaly in `other` is present.
    pub const fn contains(self, other: Anomalies) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no anomaly is present.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds the anomalies of `other`.
    pub fn insert(&mut self, other: Anomalies) {
        self.0 |= other.0;
    }

    /// Appends the anomaly names, space separated (`"multi-encoded null-byte"`), to `out`.
    pub fn write_names(self, out: &mut String) {
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(name);
            }
        }
    }
}
