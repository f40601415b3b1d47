//! A hand-written SVG of the run: throughput per second above, p99 latency
//! per second below, on a shared time axis.

use std::fmt::Write;

use crate::report::SecondPoint;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
pub fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || v.is_infinite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named, coloured line of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    top: f64,
    series: Vec<Series<'a>>,
}

fn panel(out: &mut String, p: &Panel<'_>, x_max: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_max = nice_ceiling(
        p.series
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|&(_, y)| y))
            .fold(0.0, f64::max),
    );
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| p.top + PANEL_H - v / y_max * PANEL_H;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        p.top - 10.0,
        escape(p.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{:.1}" width="{plot_w:.1}" height="{PANEL_H}" fill="#fafafa" stroke="#999"/>"##,
        p.top
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{} {}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            label(v),
            escape(p.unit)
        );
    }
    let ticks = 10.0_f64.min(x_max).max(1.0);
    let step = nice_ceiling(x_max / ticks);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}s</text>"#,
            x(t),
            p.top + PANEL_H + 16.0,
            label(t)
        );
        t += step;
    }
    for (k, (name, color, pts)) in p.series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let mut points = String::new();
        for &(px, py) in pts {
            let _ = write!(points, "{:.1},{:.1} ", x(px), y(py));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        let lx = LEFT + plot_w - 160.0;
        let ly = p.top + 16.0 + 16.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
            lx + 26.0,
            escape(name)
        );
    }
}

fn label(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_string()
    }
}

/// The chart as an SVG document, of the whole seconds of a run that
/// lasted `secs` (a last partial second would read as a drop in rate).
pub fn svg(title: &str, points: &[SecondPoint], secs: f64) -> String {
    let whole = (secs.floor().max(1.0) as usize).min(points.len());
    let points = &points[..whole];
    let x_max = (points.len() as f64).max(1.0);
    // each second's value plotted at the middle of its second
    let at = |p: &SecondPoint| p.second as f64 + 0.5;
    let requests: Vec<(f64, f64)> = points.iter().map(|p| (at(p), p.requests as f64)).collect();
    let events: Vec<(f64, f64)> = points.iter().map(|p| (at(p), p.events as f64)).collect();
    let failures: Vec<(f64, f64)> = points.iter().map(|p| (at(p), p.failures as f64)).collect();
    let p99: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.p99_ms.map(|v| (at(p), v)))
        .collect();
    let height = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="16">{}</text>"#,
        escape(title)
    );
    let mut series = vec![("requests/s", "#1f77b4", requests)];
    if events != series[0].2 {
        series.push(("events/s", "#2ca02c", events));
    }
    if failures.iter().any(|&(_, f)| f > 0.0) {
        series.push(("non-2xx/s", "#d62728", failures));
    }
    panel(
        &mut out,
        &Panel {
            title: "Throughput per second",
            unit: "/s",
            top: TOP + 20.0,
            series,
        },
        x_max,
    );
    panel(
        &mut out,
        &Panel {
            title: "p99 latency per second",
            unit: "ms",
            top: TOP + 20.0 + PANEL_H + GAP,
            series: vec![("p99 ms", "#ff7f0e", p99)],
        },
        x_max,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every opened element is closed in order, attributes are quoted,
    /// and text holds no raw `<` or `&`.
    fn well_formed(doc: &str) -> Result<usize, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        let mut elements = 0;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            if text.contains('>') || (text.contains('&') && !text.contains(';')) {
                return Err(format!("bad text {text:?}"));
            }
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in {tag}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or("close without open")?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
            } else {
                elements += 1;
                let name = tag
                    .split_whitespace()
                    .next()
                    .ok_or("empty tag")?
                    .trim_end_matches('/')
                    .to_string();
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        if stack.is_empty() && rest.trim().is_empty() {
            Ok(elements)
        } else {
            Err(format!("left open: {stack:?}"))
        }
    }

    #[test]
    fn svg_is_well_formed() {
        let points: Vec<SecondPoint> = (0..30)
            .map(|i| SecondPoint {
                second: i,
                requests: 2000 + i * 10,
                events: 4000,
                failures: u64::from(i.is_multiple_of(7)),
                p99_ms: (i != 3).then_some(1.5 + i as f64 / 10.0),
            })
            .collect();
        let doc = svg("single <rate> & \"2000/s\"", &points, 30.2);
        assert!(doc.starts_with("<svg"));
        let n = well_formed(&doc).unwrap();
        assert!(n > 20);
        assert_eq!(doc.matches("<polyline").count(), 4);
        // empty run still renders
        well_formed(&svg("empty", &[], 0.0)).unwrap();
        // the partial last second is left out
        assert_eq!(svg("t", &points, 29.9).matches("<polyline").count(), 4);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
        assert_eq!(label(2.0), "2");
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(0.5), "0.5");
        assert_eq!(label(25_000.0), "25k");
    }
}
