//! A database Sluice migrates, read from the connection string it was
//! registered with, in either form (conventions §4):
//!
//! - `Host=…;Port=…;Database=…;Username=…;Password=…` — keys are
//!   case-insensitive, `Port` is optional (5432), `Server`, `User Id`,
//!   `User`, `Uid` and `Pwd` are accepted as aliases, and a value may be
//!   quoted (`Password="a;b"`, a doubled quote inside stands for one);
//! - `postgresql://user:password@host:port/database` (or `postgres://`),
//!   percent-decoded.
//!
//! Neither a [`TargetError`], nor `Debug`, nor a connection error ever
//! contains the password or the string it came in.

use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

use crate::executor::ExecError;

/// The `application_name` Sluice's connections carry.
pub const APPLICATION_NAME: &str = "sluice-orchestrator";

/// One database: where it is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
    database: String,
    username: String,
    password: Option<String>,
}

/// A connection string that cannot be used. The messages name the part at
/// fault, never its value when it could be the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the connection string is empty")]
    Empty,
    #[error("the connection string has no {0}")]
    Missing(&'static str),
    #[error("the connection string's port is not a number from 1 to 65535")]
    BadPort,
    #[error("the connection string has a part that is not `key=value`")]
    NotKeyValue,
    #[error("the connection string has an unterminated quoted value")]
    UnterminatedQuote,
    #[error("the connection string's {0} is not valid percent-encoding")]
    BadPercentEncoding(&'static str),
    #[error("the connection string URL is malformed: {0}")]
    BadUrl(&'static str),
}

impl Target {
    /// Reads either form of connection string.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("postgresql://") || lower.starts_with("postgres://") {
            parse_url(s)
        } else {
            parse_key_value(s)
        }
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The role Sluice logs in as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// `host:port/database`, for messages (no user, no password).
    pub fn display_name(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Opens a connection, giving up after `timeout`. The error names the
    /// host, port and database and never the password.
    pub async fn connect(&self, timeout: Duration) -> Result<PgConnection, ExecError> {
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.username)
            .database(&self.database)
            .application_name(APPLICATION_NAME);
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        match tokio::time::timeout(timeout, options.connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ExecError::Connect {
                target: self.display_name(),
                message: self.scrub(&crate::executor::pg_message(&e)),
            }),
            Err(_) => Err(ExecError::Connect {
                target: self.display_name(),
                message: format!("no connection within {} ms", timeout.as_millis()),
            }),
        }
    }

    /// `message` with the password, should it appear, masked.
    fn scrub(&self, message: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => message.replace(p.as_str(), "***"),
            _ => message.to_string(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn parse_key_value(s: &str) -> Result<Target, TargetError> {
    let mut host = None;
    let mut port = None;
    let mut database = None;
    let mut username = None;
    let mut password = None;
    for (key, value) in split_pairs(s)? {
        let key: String = key
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "host" | "server" | "hostname" => host = Some(value),
            "port" => port = Some(value),
            "database" | "initialcatalog" | "db" => database = Some(value),
            "username" | "userid" | "user" | "uid" => username = Some(value),
            "password" | "pwd" => password = Some(value),
            // Pooling, SSL Mode, Timeout, …: not Sluice's business.
            _ => {}
        }
    }
    let port = match port {
        None => 5432,
        Some(p) if p.trim().is_empty() => 5432,
        Some(p) => parse_port(p.trim())?,
    };
    finish(host, port, database, username, password)
}

/// Splits `k=v;k="v;v";…` into pairs, honouring quoted values.
fn split_pairs(s: &str) -> Result<Vec<(String, String)>, TargetError> {
    let mut pairs = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t', '\n', '\r']);
        if rest.is_empty() {
            return Ok(pairs);
        }
        let Some(eq) = rest.find('=') else {
            return Err(TargetError::NotKeyValue);
        };
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(';') {
            return Err(TargetError::NotKeyValue);
        }
        let after = rest[eq + 1..].trim_start();
        let (value, remaining) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let mut value = String::new();
                let mut chars = after[1..].char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    if c == q {
                        if after[1 + i + 1..].starts_with(q) {
                            value.push(q);
                            chars.next();
                        } else {
                            end = Some(1 + i + 1);
                            break;
                        }
                    } else {
                        value.push(c);
                    }
                }
                let end = end.ok_or(TargetError::UnterminatedQuote)?;
                let tail = after[end..].trim_start();
                if !(tail.is_empty() || tail.starts_with(';')) {
                    return Err(TargetError::NotKeyValue);
                }
                (value, tail)
            }
            _ => match after.find(';') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            },
        };
        pairs.push((key.to_string(), value));
        rest = remaining;
    }
}

fn parse_url(s: &str) -> Result<Target, TargetError> {
    let rest = s
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or(TargetError::BadUrl("no scheme"))?;
    // Query parameters (sslmode=…) are not Sluice's business.
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(decode(u, "user name")?), Some(decode(p, "password")?)),
            None => (Some(decode(info, "user name")?), None),
        },
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (h, after) = bracketed
            .split_once(']')
            .ok_or(TargetError::BadUrl("unclosed [ in the host"))?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), Some(p)),
            None if after.is_empty() => (h.to_string(), None),
            None => return Err(TargetError::BadUrl("junk after the host")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h, "host")?, Some(p)),
            None => (decode(hostport, "host")?, None),
        }
    };
    let port = match port {
        None | Some("") => 5432,
        Some(p) => parse_port(p)?,
    };
    let database = if path.is_empty() {
        None
    } else {
        Some(decode(path, "database")?)
    };
    finish(Some(host), port, database, username, password)
}

fn finish(
    host: Option<String>,
    port: u16,
    database: Option<String>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Target, TargetError> {
    let host = host
        .filter(|h| !h.is_empty())
        .ok_or(TargetError::Missing("host"))?;
    let database = database
        .filter(|d| !d.is_empty())
        .ok_or(TargetError::Missing("database"))?;
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or(TargetError::Missing("user name"))?;
    Ok(Target {
        host,
        port,
        database,
        username,
        password,
    })
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort),
        Ok(n) => Ok(n),
    }
}

/// Percent-decodes `s` (UTF-8).
fn decode(s: &str, what: &'static str) -> Result<String, TargetError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(TargetError::BadPercentEncoding(what))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TargetError::BadPercentEncoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_form() {
        let t = Target::parse("Host=db.local;Port=6543;Database=shop;Username=app;Password=s3cr;t")
            .unwrap_err();
        assert_eq!(t, TargetError::NotKeyValue);
        let t = Target::parse(
            "host=db.local; PORT=6543; Database=shop; User Id=app; Password=\"s3;cr\"\"t\"",
        )
        .unwrap();
        assert_eq!(t.host(), "db.local");
        assert_eq!(t.port(), 6543);
        assert_eq!(t.database(), "shop");
        assert_eq!(t.username(), "app");
        assert_eq!(t.password.as_deref(), Some("s3;cr\"t"));
        let t = Target::parse("Server=h;Database=d;Uid=u;Pwd=p").unwrap();
        assert_eq!(t.port(), 5432);
        assert_eq!(t.host(), "h");
    }

    #[test]
    fn url_form() {
        let t = Target::parse(
            "postgresql://us%40er:p%2Fss%3Aw@example.org:5433/my%20db?sslmode=disable",
        )
        .unwrap();
        assert_eq!(t.username(), "us@er");
        assert_eq!(t.password.as_deref(), Some("p/ss:w"));
        assert_eq!(t.host(), "example.org");
        assert_eq!(t.port(), 5433);
        assert_eq!(t.database(), "my db");
        let t = Target::parse("postgres://u@[::1]/d").unwrap();
        assert_eq!((t.host(), t.port()), ("::1", 5432));
    }

    #[test]
    fn debug_redacts_the_password() {
        let t = Target::parse("Host=h;Database=d;Username=u;Password=hunter2").unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("redacted"), "{d}");
    }
}
