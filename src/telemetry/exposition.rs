//! The two exposition formats: Prometheus text 0.0.4 (the default) and OpenMetrics 1.0 (only
//! for a scraper whose `Accept` prefers it). prometheus-client writes OpenMetrics; the 0.0.4
//! text is derived from it: counters are declared under their sample name (`x_total`), and the
//! `# UNIT` and `# EOF` lines, which 0.0.4 does not have, are left out.

use std::collections::HashSet;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The format a scraper's `Accept` header asks for: OpenMetrics when it ranks it above the
/// text format (by `q`), the text format otherwise (also without an `Accept`).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut text, mut open) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0_f32;
        let mut version = None;
        for param in parts {
            match param.split_once('=').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'))) {
                Some((k, v)) if k == "q" => q = v.parse().unwrap_or(0.0),
                Some((k, v)) if k == "version" => version = Some(v.to_owned()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0" || v == "0.0.1") => {
                open = open.max(q);
            }
            "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => text = text.max(q),
            "*/*" | "text/*" => text = text.max(q),
            _ => {}
        }
    }
    if open > 0.0 && open > text { Format::OpenMetrics } else { Format::Text }
}

/// OpenMetrics text (as prometheus-client writes it) → Prometheus text 0.0.4.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if counters.contains(name) { format!("{name}_total") } else { name.to_owned() };
            // 0.0.4 escapes only `\` and newlines in HELP.
            out.push_str(&format!("# HELP {name} {}\n", help.replace("\\\"", "\"")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_openmetrics_only_when_preferred() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        // What Prometheus sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("application/openmetrics-text")), Format::OpenMetrics);
        // Ranked below the text format, refused, or a version we do not write: text.
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0.1, text/plain")), Format::Text);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0")), Format::Text);
        assert_eq!(negotiate(Some("application/openmetrics-text;version=2.0.0")), Format::Text);
    }

    #[test]
    fn counters_are_declared_under_their_sample_name() {
        let om = "# HELP a_reviews Reviews, \\\"by\\\" decision.\n# TYPE a_reviews counter\na_reviews_total{d=\"x\"} 1\n\
                  # HELP a_seconds Time.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\na_seconds_sum 0.5\n\
                  # TYPE a_thing unknown\na_thing 1\n# EOF\n";
        let text = to_text_004(om);
        assert_eq!(
            text,
            "# HELP a_reviews_total Reviews, \"by\" decision.\n# TYPE a_reviews_total counter\na_reviews_total{d=\"x\"} 1\n\
             # HELP a_seconds Time.\n# TYPE a_seconds histogram\na_seconds_sum 0.5\n# TYPE a_thing untyped\na_thing 1\n"
        );
    }
}
