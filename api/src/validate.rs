//! Request body validation for the Backup platform routes: a JSON object
//! read field by field, every failure collected (not just the first) and
//! answered together as one 422 `{"detail": [{"loc", "msg", "type"}]}`
//! ([`ApiError::Fields`]). The `type` strings follow pydantic's names
//! (`value_error.missing`, `type_error.str`, `type_error.enum`, …), which
//! the contract's example uses.

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};

/// A field as the body gives it: absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    /// The value, treating null like absent.
    pub fn value(self) -> Option<T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }

    /// For a partial update: absent keeps `old`, null clears, a value replaces.
    pub fn merge(self, old: Option<T>) -> Option<T> {
        match self {
            Field::Absent => old,
            Field::Null => None,
            Field::Set(v) => Some(v),
        }
    }
}

/// Parses a request body that must be a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::Fields(vec![FieldError::body(
            &[],
            "the body must be a JSON object",
            "type_error.dict",
        )])),
        Err(e) => Err(ApiError::Fields(vec![FieldError::body(
            &[],
            format!("the body is not valid JSON: {e}"),
            "value_error.jsondecode",
        )])),
    }
}

/// Collects the failures of one body's fields.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, e: FieldError) {
        self.errors.push(e);
    }

    fn raw<'v>(obj: &'v Map<String, Value>, path: &[&str]) -> Field<&'v Value> {
        match path.last().and_then(|k| obj.get(*k)) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(v) => Field::Set(v),
        }
    }

    /// A string of 1 to `max` characters (surrounding blanks trimmed; no NUL).
    pub fn string(&mut self, obj: &Map<String, Value>, path: &[&str], max: usize) -> Field<String> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    self.fail(FieldError::body(
                        path,
                        "ensure this value has at least 1 characters",
                        "value_error.any_str.min_length",
                    ));
                    Field::Absent
                } else if s.chars().count() > max {
                    self.fail(FieldError::body(
                        path,
                        format!("ensure this value has at most {max} characters"),
                        "value_error.any_str.max_length",
                    ));
                    Field::Absent
                } else if s.contains('\0') {
                    self.fail(FieldError::body(
                        path,
                        "the value holds a NUL character",
                        "value_error.str.nul",
                    ));
                    Field::Absent
                } else {
                    Field::Set(s.to_owned())
                }
            }
            Field::Set(_) => {
                self.fail(FieldError::body(
                    path,
                    "str type expected",
                    "type_error.str",
                ));
                Field::Absent
            }
        }
    }

    /// A secret string: kept exactly as given (no trimming), at most `max` bytes.
    pub fn secret(&mut self, obj: &Map<String, Value>, path: &[&str], max: usize) -> Field<String> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::String(s)) if s.len() <= max && !s.contains('\0') => {
                Field::Set(s.clone())
            }
            Field::Set(Value::String(_)) => {
                self.fail(FieldError::body(
                    path,
                    format!("ensure this value has at most {max} bytes and no NUL"),
                    "value_error.any_str.max_length",
                ));
                Field::Absent
            }
            Field::Set(_) => {
                self.fail(FieldError::body(
                    path,
                    "str type expected",
                    "type_error.str",
                ));
                Field::Absent
            }
        }
    }

    /// An integer between `min` and `max`.
    pub fn int(
        &mut self,
        obj: &Map<String, Value>,
        path: &[&str],
        min: i64,
        max: i64,
    ) -> Field<i64> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::Number(n)) if n.is_i64() => {
                let n = n.as_i64().unwrap_or_default();
                if n < min {
                    self.fail(FieldError::body(
                        path,
                        format!("ensure this value is greater than or equal to {min}"),
                        "value_error.number.not_ge",
                    ));
                    Field::Absent
                } else if n > max {
                    self.fail(FieldError::body(
                        path,
                        format!("ensure this value is less than or equal to {max}"),
                        "value_error.number.not_le",
                    ));
                    Field::Absent
                } else {
                    Field::Set(n)
                }
            }
            Field::Set(_) => {
                self.fail(FieldError::body(
                    path,
                    "value is not a valid integer",
                    "type_error.integer",
                ));
                Field::Absent
            }
        }
    }

    /// A JSON boolean.
    pub fn bool(&mut self, obj: &Map<String, Value>, path: &[&str]) -> Field<bool> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::Bool(b)) => Field::Set(*b),
            Field::Set(_) => {
                self.fail(FieldError::body(
                    path,
                    "value could not be parsed to a boolean",
                    "type_error.bool",
                ));
                Field::Absent
            }
        }
    }

    /// One of `allowed`, exactly.
    pub fn choice(
        &mut self,
        obj: &Map<String, Value>,
        path: &[&str],
        allowed: &[&str],
    ) -> Field<String> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::String(s)) if allowed.contains(&s.as_str()) => Field::Set(s.clone()),
            Field::Set(_) => {
                let permitted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                self.fail(FieldError::body(
                    path,
                    format!(
                        "value is not a valid enumeration member; permitted: {}",
                        permitted.join(", ")
                    ),
                    "type_error.enum",
                ));
                Field::Absent
            }
        }
    }

    /// A JSON object.
    pub fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &[&str],
    ) -> Field<&'v Map<String, Value>> {
        match Self::raw(obj, path) {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Set(Value::Object(m)) => Field::Set(m),
            Field::Set(_) => {
                self.fail(FieldError::body(
                    path,
                    "value is not a valid dict",
                    "type_error.dict",
                ));
                Field::Absent
            }
        }
    }

    /// `value`, or a "field required" failure at `path` when it is none.
    pub fn require<T>(&mut self, value: Option<T>, path: &[&str]) -> Option<T> {
        if value.is_none() && !self.errors.iter().any(|e| e.loc[1..] == *path) {
            self.fail(FieldError::missing(path));
        }
        value
    }

    /// `Ok` when every field passed, else the 422 with all failures.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Fields(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_failure_with_its_location() {
        let body =
            json!({"name": 5, "type": "ftp", "port": 70000, "database": {"type": "postgresql"}});
        let obj = body.as_object().unwrap();
        let mut v = Validator::new();
        let name = v.string(obj, &["name"], 10).value();
        v.require(name, &["name"]);
        v.choice(obj, &["type"], &["local", "ssh"]);
        v.int(obj, &["port"], 1, 65535);
        let db = v.object(obj, &["database"]).value().unwrap();
        let host = v.string(db, &["database", "host"], 10).value();
        v.require(host, &["database", "host"]);
        let Err(ApiError::Fields(errors)) = v.finish() else {
            panic!("expected failures")
        };
        let locs: Vec<String> = errors.iter().map(|e| e.loc.join(".")).collect();
        assert_eq!(
            locs,
            ["body.name", "body.type", "body.port", "body.database.host"]
        );
        assert_eq!(errors[0].kind, "type_error.str");
        assert_eq!(errors[1].kind, "type_error.enum");
        assert_eq!(errors[3].kind, "value_error.missing");
    }

    #[test]
    fn merge_keeps_clears_or_replaces() {
        assert_eq!(Field::<i64>::Absent.merge(Some(1)), Some(1));
        assert_eq!(Field::<i64>::Null.merge(Some(1)), None);
        assert_eq!(Field::Set(2).merge(Some(1)), Some(2));
    }
}
