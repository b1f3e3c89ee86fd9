//! A request taken apart into the fields rules look at, each decoded into its views.
//!
//! Invariants:
//! - A field holds one line per item (one per query argument or cookie, one for the others); lines
//!   are joined with `\n`, which decoding never leaves inside an item. Empty items are dropped.
//! - A view buffer is filled only when some item of the field has a view that differs from its
//!   plain text and some rule needs that view; otherwise [`Subject::view`] returns the plain text.
//! - Buffers are reused from request to request: a benign request allocates nothing once warm.

use logsec_sdk::Request;

use crate::normalize::{Anomalies, Normalized, View};
use crate::rules::Field;

/// Which fields and views the loaded rules need; only those are built.
#[derive(Debug, Default, Clone, Copy)]
pub struct Needs {
    /// `fields[f.index()]`: some rule applies to field `f`.
    pub fields: [bool; Field::ALL.len()],
    /// `views[f.index()][v.index()]`: some rule on field `f` matches view `v`.
    pub views: [[bool; View::ALL.len()]; Field::ALL.len()],
}

/// One field of one request, decoded.
#[derive(Debug, Default)]
pub struct Subject {
    text: String,
    views: [String; View::ALL.len()],
    has: [bool; View::ALL.len()],
}

impl Subject {
    fn clear(&mut self) {
        self.text.clear();
        self.has = [false; View::ALL.len()];
    }

    /// The plain decoded text of every item, one per line.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `view` of every item, one per line.
    pub fn view(&self, view: View) -> &str {
        if self.has[view.index()] {
            &self.views[view.index()]
        } else {
            &self.text
        }
    }

    /// Whether any view differs from the plain text.
    pub fn has_views(&self) -> bool {
        self.has.iter().any(|&h| h)
    }

    /// Appends one decoded item, with the views in `needed`.
    fn push(&mut self, item: &Normalized, needed: &[bool; View::ALL.len()]) {
        if item.text().is_empty() {
            return;
        }
        let first = self.text.is_empty();
        for view in [View::Sql, View::File, View::Shell] {
            let v = view.index();
            if !needed[v] {
                continue;
            }
            let differs = item.has_view(view);
            if differs && !self.has[v] {
                // Earlier items had no distinct view: their plain text is their view.
                self.views[v].clear();
                self.views[v].push_str(&self.text);
                self.has[v] = true;
            }
            if self.has[v] {
                let buf = &mut self.views[v];
                if !first {
                    buf.push('\n');
                }
                if differs {
                    item.write_view(view, buf);
                } else {
                    buf.push_str(item.text());
                }
            }
        }
        if !first {
            self.text.push('\n');
        }
        self.text.push_str(item.text());
    }
}

/// Every field of one request, decoded, with the scratch space to do it.
#[derive(Debug, Default)]
pub struct Subjects {
    fields: [Subject; Field::ALL.len()],
    item: Normalized,
    path_anomalies: Anomalies,
}

impl Subjects {
    /// The anomalies of the last loaded path (given or decoded).
    pub fn path_anomalies(&self) -> Anomalies {
        self.path_anomalies
    }

    /// The decoded `field` of the last loaded request.
    pub fn get(&self, field: Field) -> &Subject {
        &self.fields[field.index()]
    }

    /// Decodes the fields of `req` that come from its request line and extra fields (everything but
    /// the user agent and referer, see [`Subjects::load_one`]) that `needs` asks for, replacing the
    /// previous request's. With `path_anomalies` the path is taken as already scanned (its result
    /// was cached) and is not decoded; those anomalies stand in for its own.
    pub fn load(&mut self, req: &Request, needs: &Needs, path_anomalies: Option<Anomalies>) {
        for s in &mut self.fields {
            s.clear();
        }
        let (path, query) = match req.uri.find('?') {
            Some(q) => (&req.uri[..q], Some(&req.uri[q + 1..])),
            None => (req.uri.as_str(), None),
        };
        let want = |f: Field| needs.fields[f.index()];
        let mut anomalies = match path_anomalies {
            Some(cached) => cached,
            None if want(Field::Path) || want(Field::Encoding) => {
                self.item.set(path, true);
                self.fields[Field::Path.index()].push(&self.item, &needs.views[Field::Path.index()]);
                self.item.anomalies
            }
            None => Anomalies::none(),
        };
        self.path_anomalies = anomalies;
        if (want(Field::Args) || want(Field::Encoding))
            && let Some(query) = query
        {
            let needed = &needs.views[Field::Args.index()];
            for arg in query.split('&').filter(|a| !a.is_empty()) {
                self.item.set(arg, true);
                anomalies.insert(self.item.anomalies);
                self.fields[Field::Args.index()].push(&self.item, needed);
            }
        }
        if want(Field::Uri) {
            self.item.set(&req.uri, true);
            self.fields[Field::Uri.index()].push(&self.item, &needs.views[Field::Uri.index()]);
        }
        if want(Field::Cookie)
            && let Some(cookie) = req
                .extra
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("cookie") || f.name.eq_ignore_ascii_case("http_cookie"))
        {
            let needed = &needs.views[Field::Cookie.index()];
            for c in cookie.value.split(';').map(str::trim).filter(|c| !c.is_empty()) {
                self.item.set(c, false);
                self.fields[Field::Cookie.index()].push(&self.item, needed);
            }
        }
        if want(Field::Method) {
            let s = &mut self.fields[Field::Method.index()];
            s.text.push_str(&req.method);
            s.text.make_ascii_lowercase();
        }
        if want(Field::Encoding) && !anomalies.is_empty() {
            anomalies.write_names(&mut self.fields[Field::Encoding.index()].text);
        }
    }

    /// Decodes `raw` as the whole of `field` (a user agent or referer), replacing what it held.
    pub fn load_one(&mut self, field: Field, raw: &str, needs: &Needs) {
        let plus_is_space = field != Field::UserAgent;
        self.fields[field.index()].clear();
        self.item.set(raw, plus_is_space);
        self.fields[field.index()].push(&self.item, &needs.views[field.index()]);
    }
}
