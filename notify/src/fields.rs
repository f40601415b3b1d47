//! Reading a channel's `config` object field by field, collecting every
//! problem with the field it concerns (the API answers them as a 422).

use serde_json::{Map, Value};

/// One unusable config field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldProblem {
    /// The field's name inside `config`.
    pub field: String,
    pub msg: String,
    /// A pydantic-style error type (`value_error.missing`, `type_error.str`, …).
    pub kind: &'static str,
}

impl FieldProblem {
    fn new(field: &str, msg: impl Into<String>, kind: &'static str) -> Self {
        Self {
            field: field.to_string(),
            msg: msg.into(),
            kind,
        }
    }
}

/// The longest string a config field takes.
const MAX_LEN: usize = 2048;

#[derive(Default)]
pub(crate) struct Reader {
    pub problems: Vec<FieldProblem>,
}

impl Reader {
    /// An optional non-empty string.
    pub fn opt_str(&mut self, c: &Map<String, Value>, field: &str) -> Option<String> {
        match c.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if s.len() > MAX_LEN || s.contains('\0') => {
                self.problems.push(FieldProblem::new(
                    field,
                    format!("ensure this value has at most {MAX_LEN} bytes and no NUL"),
                    "value_error.any_str.max_length",
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problems.push(FieldProblem::new(
                    field,
                    "str type expected",
                    "type_error.str",
                ));
                None
            }
        }
    }

    /// A required non-empty string.
    pub fn req_str(&mut self, c: &Map<String, Value>, field: &str) -> String {
        let had = self.problems.len();
        match self.opt_str(c, field) {
            Some(s) => s,
            None => {
                if self.problems.len() == had {
                    self.missing(field);
                }
                String::new()
            }
        }
    }

    /// A required `http` or `https` URL.
    pub fn req_url(&mut self, c: &Map<String, Value>, field: &str) -> String {
        let had = self.problems.len();
        let s = self.req_str(c, field);
        if self.problems.len() == had {
            match reqwest::Url::parse(&s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => self.problems.push(FieldProblem::new(
                    field,
                    "invalid or missing URL scheme; an http or https URL is expected",
                    "value_error.url.scheme",
                )),
            }
        }
        s
    }

    /// A required TCP port.
    pub fn req_port(&mut self, c: &Map<String, Value>, field: &str) -> u16 {
        match c.get(field) {
            None | Some(Value::Null) => {
                self.missing(field);
                0
            }
            Some(Value::Number(n)) => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) if p > 0 => p,
                _ => {
                    self.problems.push(FieldProblem::new(
                        field,
                        "ensure this value is between 1 and 65535",
                        "value_error.number.not_le",
                    ));
                    0
                }
            },
            Some(_) => {
                self.problems.push(FieldProblem::new(
                    field,
                    "value is not a valid integer",
                    "type_error.integer",
                ));
                0
            }
        }
    }

    /// A required non-empty list of e-mail addresses (a single string is
    /// taken as a list of one).
    pub fn req_addresses(&mut self, c: &Map<String, Value>, field: &str) -> Vec<String> {
        let items: Vec<&Value> = match c.get(field) {
            None | Some(Value::Null) => {
                self.missing(field);
                return Vec::new();
            }
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::String(_)) => vec![v],
            Some(_) => {
                self.problems.push(FieldProblem::new(
                    field,
                    "value is not a valid list",
                    "type_error.list",
                ));
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.problems.push(FieldProblem::new(
                field,
                "ensure this value has at least 1 items",
                "value_error.list.min_items",
            ));
        }
        let mut out = Vec::new();
        for v in items {
            match v.as_str() {
                Some(s) if is_address(s) => out.push(s.to_string()),
                _ => {
                    self.problems.push(FieldProblem::new(
                        field,
                        "value is not a valid email address",
                        "value_error.email",
                    ));
                    return Vec::new();
                }
            }
        }
        out
    }

    /// A required e-mail address.
    pub fn req_address(&mut self, c: &Map<String, Value>, field: &str) -> String {
        let had = self.problems.len();
        let s = self.req_str(c, field);
        if self.problems.len() == had && !is_address(&s) {
            self.problems.push(FieldProblem::new(
                field,
                "value is not a valid email address",
                "value_error.email",
            ));
        }
        s
    }

    fn missing(&mut self, field: &str) {
        self.problems.push(FieldProblem::new(
            field,
            "field required",
            "value_error.missing",
        ));
    }

    pub fn finish<T>(self, v: T) -> Result<T, Vec<FieldProblem>> {
        if self.problems.is_empty() {
            Ok(v)
        } else {
            Err(self.problems)
        }
    }
}

/// Whether `s` is an address lettre accepts (`name@domain`, or
/// `Name <name@domain>`).
fn is_address(s: &str) -> bool {
    s.len() <= 320 && s.parse::<lettre::message::Mailbox>().is_ok()
}
