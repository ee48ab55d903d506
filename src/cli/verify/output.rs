//! `verify --output text|json|github`: one renderer per format over the same records.
//!
//! The decision, message, warnings and audit annotations of a record are read from the
//! AdmissionResponse the webhook would send for the same review ([`Review::respond`]), so what
//! CI prints is what the API server would be told.

use serde_json::{Value, json};

use super::input::InputError;
use crate::decision::{Decision, Verdict};
use crate::policy::Mode;
use crate::review::Review;
use crate::workload::WorkloadImage;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON document: a record per object, its images and findings.
    Json,
    /// The text, then GitHub Actions workflow commands (`::error file=…,line=…::`).
    Github,
}

/// The answer for one reviewed object (or image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Allowed with warnings (`warn` mode).
    Warned,
    Denied,
    /// Denied only because checks could not be made (registry or log error, timeout).
    Undecided,
}

impl Outcome {
    fn of(decision: &Decision) -> Self {
        if decision.allowed {
            return if decision.warnings.is_empty() { Self::Allowed } else { Self::Warned };
        }
        let only_errors = decision
            .findings
            .iter()
            .filter(|f| f.mode == Mode::Enforce && f.is_problem())
            .all(|f| matches!(f.verdict, Verdict::Error(_)));
        if only_errors { Self::Undecided } else { Self::Denied }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Warned => "allowed with warnings",
            Self::Denied => "denied",
            Self::Undecided => "could not decide",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Warned => "warned",
            Self::Denied => "denied",
            Self::Undecided => "undecided",
        }
    }
}

/// One reviewed object.
pub struct Record {
    /// Where it came from (file, 1-based line); None for `verify IMAGE`.
    pub source: Option<(String, usize)>,
    /// What the final line names: `Deployment prod/web`, or the image for `verify IMAGE`.
    pub label: String,
    pub review: Review,
    pub decision: Decision,
    /// The images of the object the engine checked.
    pub images: Vec<WorkloadImage>,
    /// The request is in `--own-namespace`: allowed without any check, as by the server.
    pub own_namespace: bool,
}

impl Record {
    pub fn outcome(&self) -> Outcome {
        Outcome::of(&self.decision)
    }

    fn where_(&self) -> String {
        match &self.source {
            Some((file, line)) => format!("{} ({file}:{line})", self.label),
            None => self.label.clone(),
        }
    }
}

/// The exit code for these records: 1 if any is denied, else 2 if any could not be decided, else 0.
pub fn exit_code(records: &[Record]) -> u8 {
    let outcomes: Vec<Outcome> = records.iter().map(Record::outcome).collect();
    if outcomes.contains(&Outcome::Denied) {
        crate::cli::EXIT_DENIED
    } else if outcomes.contains(&Outcome::Undecided) {
        crate::cli::EXIT_ERROR
    } else {
        crate::cli::EXIT_ALLOWED
    }
}

/// Render records (or the input errors that stopped the review) to stdout.
pub fn print(format: Format, records: &[Record], errors: &[InputError]) {
    // Input errors go to stderr, as every other error of the command; JSON carries them too.
    if format != Format::Json {
        for error in errors {
            eprintln!("error: {error}");
        }
    }
    match format {
        Format::Text => print!("{}", text(records)),
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&json_document(records, errors)).unwrap_or_default())
        }
        Format::Github => print!("{}{}", text(records), github(records, errors)),
    }
}

/// The text output.
pub fn text(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        for finding in &record.decision.findings {
            let mark = match finding.verdict {
                Verdict::Pass => "ok  ",
                Verdict::Fail(_) => "FAIL",
                Verdict::Error(_) => "ERR ",
            };
            let mode = match (finding.is_problem(), finding.mode) {
                (true, Mode::Warn) => " [warn: allowed with a warning]",
                (true, Mode::Audit) => " [audit: allowed, recorded]",
                _ => "",
            };
            out.push_str(&format!("{mark} {finding}{mode}\n"));
        }
        if record.own_namespace {
            out.push_str(&format!(
                "--   {}: in --own-namespace: always allowed, nothing checked (as by the server)\n",
                record.review.describe()
            ));
        }
        for image in unmatched(record) {
            out.push_str(&format!(
                "--   {}: no image policy matches; allowed (--unmatched-images allow, as the server's default)\n",
                crate::engine::subject(image)
            ));
        }
        out.push_str(&format!("{}: {}\n", record.outcome().label(), record.where_()));
    }
    if records.len() > 1 {
        let count = |o: Outcome| records.iter().filter(|r| r.outcome() == o).count();
        out.push_str(&format!(
            "{} objects: {} allowed, {} allowed with warnings, {} denied, {} could not be decided\n",
            records.len(),
            count(Outcome::Allowed),
            count(Outcome::Warned),
            count(Outcome::Denied),
            count(Outcome::Undecided)
        ));
    }
    out
}

/// Images of the record that no finding names (no policy matched them).
fn unmatched(record: &Record) -> impl Iterator<Item = &WorkloadImage> {
    record.images.iter().filter(|image| {
        if record.own_namespace {
            return false;
        }
        let subject = crate::engine::subject(image);
        !record.decision.findings.iter().any(|f| f.subject == subject)
    })
}

/// What the webhook would answer: (allowed, message, warnings, audit annotations).
fn response(record: &Record) -> Value {
    let response = serde_json::to_value(record.review.respond(&record.decision)).unwrap_or(Value::Null);
    json!({
        "allowed": response.get("allowed").cloned().unwrap_or(Value::Bool(record.decision.allowed)),
        "message": response.pointer("/status/message").cloned().unwrap_or(Value::Null),
        "warnings": response.get("warnings").cloned().unwrap_or_else(|| json!([])),
        "auditAnnotations": response.get("auditAnnotations").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The JSON document.
pub fn json_document(records: &[Record], errors: &[InputError]) -> Value {
    let objects: Vec<Value> = records.iter().map(json_record).collect();
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            let (file, line) = e.location();
            json!({"file": file, "line": line, "message": e.to_string()})
        })
        .collect();
    let exit = if errors.is_empty() { exit_code(records) } else { crate::cli::EXIT_ERROR };
    json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "VerifyResult",
        "allowed": exit == crate::cli::EXIT_ALLOWED,
        "exitCode": exit,
        "objects": objects,
        "errors": errors,
    })
}

fn json_record(record: &Record) -> Value {
    let review = &record.review;
    let images: Vec<(String, Value)> = record
        .images
        .iter()
        .map(|image| {
            let value = json!({
                "image": image.raw,
                "reference": image.image.as_ref().ok().map(ToString::to_string),
                "field": image.field_path(),
                "container": image.container,
                "digest": image.image.as_ref().ok().and_then(|r| r.digest()).map(ToString::to_string),
            });
            (crate::engine::subject(image), value)
        })
        .collect();
    let findings: Vec<Value> = record
        .decision
        .findings
        .iter()
        .map(|finding| {
            let (result, message) = match &finding.verdict {
                Verdict::Pass => ("pass", None),
                Verdict::Fail(why) => ("fail", Some(why.as_str())),
                Verdict::Error(why) => ("error", Some(why.as_str())),
            };
            let mut value = json!({
                "policy": finding.policy,
                "mode": mode_name(finding.mode),
                "subject": finding.subject,
                "result": result,
                "message": message,
                // The typed class of a failed or unchecked verification (null otherwise).
                "failure": finding.failure,
            });
            if let Some((_, image)) = images.iter().find(|(subject, _)| *subject == finding.subject) {
                for key in ["image", "field", "digest"] {
                    value[key] = image[key].clone();
                }
            }
            value
        })
        .collect();
    let unmatched: Vec<String> = unmatched(record).map(|i| i.raw.clone()).collect();
    let mut images: Vec<Value> = images.into_iter().map(|(_, v)| v).collect();
    for image in &mut images {
        let raw = image["image"].as_str().unwrap_or_default().to_owned();
        image["matched"] = Value::Bool(!unmatched.contains(&raw));
    }
    let mut value = json!({
        "file": record.source.as_ref().map(|(file, _)| file),
        "line": record.source.as_ref().map(|(_, line)| line),
        "apiVersion": record.review.object.as_ref().or(review.old_object.as_ref())
            .and_then(|o| o.get("apiVersion")).cloned().unwrap_or(Value::Null),
        "kind": review.kind.kind,
        "namespace": review.namespace,
        "name": review.name,
        "operation": review.operation,
        "decision": record.outcome().key(),
        "ownNamespace": record.own_namespace,
        "images": images,
        "findings": findings,
    });
    if let (Some(map), Value::Object(response)) = (value.as_object_mut(), response(record)) {
        map.extend(response);
    }
    value
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Warn => "warn",
        Mode::Audit => "audit",
    }
}

/// GitHub Actions workflow commands: an error per denied or undecided object, a warning per
/// warned one, a notice per audit annotation; at the manifest's line.
pub fn github(records: &[Record], errors: &[InputError]) -> String {
    let mut out = String::new();
    for error in errors {
        let (file, line) = error.location();
        out.push_str(&command(
            "error",
            Some((file, line.unwrap_or(1))),
            "portcullis: invalid input",
            &error.to_string(),
        ));
    }
    for record in records {
        let at = record.source.as_ref().map(|(file, line)| (file.as_str(), *line));
        let response = response(record);
        let strings = |key: &str| -> Vec<String> {
            match response.get(key) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                Some(Value::Object(map)) => {
                    map.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default())).collect()
                }
                _ => Vec::new(),
            }
        };
        match record.outcome() {
            Outcome::Denied | Outcome::Undecided => {
                let message = response.get("message").and_then(Value::as_str).unwrap_or("denied");
                let title = format!("portcullis: {} {}", record.label, record.outcome().label());
                out.push_str(&command("error", at, &title, message));
            }
            Outcome::Warned | Outcome::Allowed => {}
        }
        for warning in strings("warnings") {
            out.push_str(&command("warning", at, &format!("portcullis: {}", record.label), &warning));
        }
        for note in strings("auditAnnotations") {
            out.push_str(&command("notice", at, &format!("portcullis audit: {}", record.label), &note));
        }
    }
    out
}

fn command(level: &str, at: Option<(&str, usize)>, title: &str, message: &str) -> String {
    let mut properties = Vec::new();
    if let Some((file, line)) = at.filter(|(file, _)| *file != "-") {
        properties.push(format!("file={}", escape_property(file)));
        properties.push(format!("line={line}"));
    }
    properties.push(format!("title={}", escape_property(title)));
    format!("::{level} {}::{}\n", properties.join(","), escape_data(message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_are_escaped() {
        let line = command("error", Some(("a,b:c.yaml", 3)), "t: x", "50% done\nnext");
        assert_eq!(line, "::error file=a%2Cb%3Ac.yaml,line=3,title=t%3A x::50%25 done%0Anext\n");
        assert_eq!(command("warning", Some(("-", 1)), "t", "m"), "::warning title=t::m\n");
    }
}
