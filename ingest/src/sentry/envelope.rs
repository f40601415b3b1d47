//! Sentry envelopes: a JSON header line, then items, each a JSON header
//! line and a payload — `length` bytes when the item header states it,
//! else up to the next newline.

use serde::Deserialize;

/// The envelope's header: the fields Sluice reads (others are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct Header {
    #[serde(default)]
    pub dsn: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// One item: its type and its payload, borrowed from the body.
#[derive(Debug)]
pub struct Item<'a> {
    pub ty: String,
    pub payload: &'a [u8],
}

#[derive(Debug)]
pub struct Envelope<'a> {
    pub header: Header,
    pub items: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct ItemHeader {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    length: Option<u64>,
}

/// The bytes up to the next newline (or the end), and what follows it.
fn line(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// Splits an envelope; at most `max_items` items. The error is the
/// client's message.
pub fn parse(body: &[u8], max_items: usize) -> Result<Envelope<'_>, String> {
    let (head, mut rest) = line(body);
    if head.trim_ascii().is_empty() {
        return Err("malformed envelope: the first line must be the envelope header".into());
    }
    let header: Header =
        serde_json::from_slice(head).map_err(|e| format!("malformed envelope header: {e}"))?;
    let mut items = Vec::new();
    while !rest.trim_ascii().is_empty() {
        let (h, after) = line(rest);
        if h.trim_ascii().is_empty() {
            rest = after;
            continue;
        }
        let n = items.len();
        if n == max_items {
            return Err(format!(
                "envelope has more than {max_items} items; at most {max_items} are accepted"
            ));
        }
        let ih: ItemHeader = serde_json::from_slice(h)
            .map_err(|e| format!("malformed envelope: item {n} header: {e}"))?;
        let (payload, next) = match ih.length {
            Some(len) => {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > after.len() {
                    return Err(format!(
                        "malformed envelope: item {n} states length {len}, but only {} bytes follow",
                        after.len()
                    ));
                }
                let (p, next) = after.split_at(len);
                (p, next.strip_prefix(b"\n").unwrap_or(next))
            }
            None => line(after),
        };
        items.push(Item { ty: ih.ty, payload });
        rest = next;
    }
    Ok(Envelope { header, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_and_without_length() {
        let body =
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://k@h/1\"}\n\
{\"type\":\"attachment\",\"length\":10}\n\
helloworld\n\
{\"type\":\"event\"}\n\
{\"message\":\"hi\"}\n\
{\"type\":\"session\",\"length\":2}\n{}";
        let e = parse(body, 100).unwrap();
        assert_eq!(
            e.header.event_id.as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(e.header.dsn.as_deref(), Some("https://k@h/1"));
        let tys: Vec<&str> = e.items.iter().map(|i| i.ty.as_str()).collect();
        assert_eq!(tys, ["attachment", "event", "session"]);
        assert_eq!(e.items[0].payload, b"helloworld");
        assert_eq!(e.items[1].payload, br#"{"message":"hi"}"#);
        assert_eq!(e.items[2].payload, b"{}");
    }

    #[test]
    fn a_length_may_hold_newlines_and_the_end_may_have_none() {
        let e = parse(b"{}\n{\"type\":\"a\",\"length\":3}\na\nb", 10).unwrap();
        assert_eq!(e.items[0].payload, b"a\nb");
        let e = parse(b"{}\n{\"type\":\"x\",\"length\":0}\n\n\n", 10).unwrap();
        assert_eq!(e.items.len(), 1);
        assert!(e.items[0].payload.is_empty());
        assert!(parse(b"{}", 10).unwrap().items.is_empty());
    }

    #[test]
    fn malformed_envelopes_are_refused_clearly() {
        assert!(parse(b"", 10).unwrap_err().contains("envelope header"));
        assert!(parse(b"not json\n", 10)
            .unwrap_err()
            .contains("malformed envelope header"));
        assert!(parse(b"{}\n{\"length\":1}\nx", 10)
            .unwrap_err()
            .contains("item 0 header"));
        assert!(parse(b"{}\n{\"type\":\"event\",\"length\":99}\n{}", 10)
            .unwrap_err()
            .contains("only 2 bytes follow"));
        let many = format!("{{}}\n{}", "{\"type\":\"x\"}\n{}\n".repeat(3));
        assert!(parse(many.as_bytes(), 2)
            .unwrap_err()
            .contains("more than 2"));
    }
}
