//! `verify -f`: manifest streams → objects, each with the file and line it starts at.
//!
//! Reads multi-document YAML (`kustomize build`, `helm template`), JSON (one value, several
//! concatenated, or an array), `kind: List` (and any `*List` with `items`), `-` for stdin, and
//! directories walked recursively for `*.yaml`, `*.yml` and `*.json` (sorted; hidden entries
//! skipped). Kustomize's own files (`kustomize.config.k8s.io`) are not objects of the cluster and
//! are skipped.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest manifest file read.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One object to review.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file as given on the command line (or found in a directory); `-` for stdin.
    pub file: String,
    /// 1-based line where the object (or the List holding it) starts.
    pub line: usize,
    pub object: Value,
}

/// Why an input cannot be reviewed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: cannot read it: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { file: String },
    #[error("{file}: not UTF-8 text")]
    NotUtf8 { file: String },
    #[error("{file}:{line}: not valid {format}: {reason}")]
    Syntax { file: String, line: usize, format: &'static str, reason: String },
    #[error("{file}:{line}: not a Kubernetes object: {reason}")]
    NotAnObject { file: String, line: usize, reason: String },
    #[error("{file}: a directory with no *.yaml, *.yml or *.json file")]
    EmptyDirectory { file: String },
}

impl InputError {
    /// The file and line to point at.
    pub fn location(&self) -> (&str, Option<usize>) {
        match self {
            Self::Read { file, .. }
            | Self::TooLarge { file }
            | Self::NotUtf8 { file }
            | Self::EmptyDirectory { file } => (file, None),
            Self::Syntax { file, line, .. } | Self::NotAnObject { file, line, .. } => (file, Some(*line)),
        }
    }
}

/// Every object of every input, in order; and every input error (all of them, not just the first).
pub fn read(inputs: &[PathBuf]) -> (Vec<Document>, Vec<InputError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().take(MAX_FILE_BYTES + 1).read_to_string(&mut text) {
                Ok(_) => parse_into("-", &text, &mut documents, &mut errors),
                Err(error) => errors.push(InputError::Read { file: "-".to_owned(), error }),
            }
            continue;
        }
        let files = if input.is_dir() {
            let mut files = Vec::new();
            if let Err(error) = walk(input, &mut files) {
                errors.push(InputError::Read { file: input.display().to_string(), error });
                continue;
            }
            if files.is_empty() {
                errors.push(InputError::EmptyDirectory { file: input.display().to_string() });
            }
            files
        } else {
            vec![input.clone()]
        };
        for file in files {
            match read_file(&file) {
                Ok(text) => parse_into(&file.display().to_string(), &text, &mut documents, &mut errors),
                Err(error) => errors.push(error),
            }
        }
    }
    (documents, errors)
}

fn read_file(path: &Path) -> Result<String, InputError> {
    let file = path.display().to_string();
    let handle = std::fs::File::open(path).map_err(|error| InputError::Read { file: file.clone(), error })?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| InputError::Read { file: file.clone(), error })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(InputError::TooLarge { file });
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8 { file })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parse one file's text (YAML or JSON) into objects.
fn parse_into(file: &str, text: &str, documents: &mut Vec<Document>, errors: &mut Vec<InputError>) {
    let values = if text.trim_start().starts_with(['{', '[']) {
        match json_values(file, text) {
            Ok(values) => values.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        }
    } else {
        yaml_values(file, text)
    };
    for value in values {
        let (line, value) = match value {
            Ok(found) => found,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        for object in flatten(value) {
            match check_object(&object) {
                Ok(true) => documents.push(Document { file: file.to_owned(), line, object }),
                Ok(false) => {}
                Err(reason) => errors.push(InputError::NotAnObject { file: file.to_owned(), line, reason }),
            }
        }
    }
}

/// Lists (`kind: List`, `kind: DeploymentList`, … with `items`) become their items.
fn flatten(value: Value) -> Vec<Value> {
    let is_list = value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    match value {
        Value::Array(items) => items.into_iter().flat_map(flatten).collect(),
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items.into_iter().flat_map(flatten).collect(),
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

/// Ok(true): an object to review; Ok(false): skipped (kustomize's own files); Err: not an object.
fn check_object(value: &Value) -> Result<bool, String> {
    let Some(map) = value.as_object() else {
        return Err(format!("a document must be a mapping, not {}", kind_of(value)));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err("apiVersion and kind are required (render Helm charts with `helm template` and \
                    kustomizations with `kustomize build` first)"
            .to_owned());
    }
    if api_version.starts_with("kustomize.config.k8s.io/") {
        return Ok(false);
    }
    if !map.get("metadata").is_some_and(Value::is_object) {
        return Err(format!("{kind} has no metadata"));
    }
    Ok(true)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Concatenated JSON values, each with its starting line.
fn json_values(file: &str, text: &str) -> Result<Vec<(usize, Value)>, InputError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let start = start + text[start..].len() - text[start..].trim_start().len();
        match stream.next() {
            None => return Ok(out),
            Some(Ok(value)) => out.push((line_of(text, start), value)),
            Some(Err(e)) => {
                return Err(InputError::Syntax {
                    file: file.to_owned(),
                    line: e.line(),
                    format: "JSON",
                    reason: e.to_string(),
                });
            }
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

/// YAML documents, each with the line of its first content line, or the error of each document
/// that does not parse (the others are still read). Documents are split at `---` (and `...`)
/// lines; a document of comments only is skipped.
fn yaml_values(file: &str, text: &str) -> Vec<Result<(usize, Value), InputError>> {
    let mut out = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(value) => {
                let offset = chunk.lines().take_while(|l| is_blank_or_comment(l)).count();
                out.push(Ok((first_line + offset, value)));
            }
            Err(e) => {
                let line = e.location().map_or(first_line, |l| first_line + l.line() - 1);
                let reason = shift_lines(&e.to_string(), first_line - 1);
                out.push(Err(InputError::Syntax { file: file.to_owned(), line, format: "YAML", reason }));
            }
        }
    }
    out
}

/// The parser counts lines from the start of the document; the user counts from the file's.
fn shift_lines(message: &str, by: usize) -> String {
    let Ok(pattern) = regex::Regex::new(r"line (\d+) column") else {
        return message.to_owned();
    };
    pattern
        .replace_all(message, |c: &regex::Captures<'_>| {
            let line = c[1].parse::<usize>().map_or(c[1].to_owned(), |l| (l + by).to_string());
            format!("line {line} column")
        })
        .into_owned()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// (1-based line the chunk starts at, chunk text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut chunk = String::new();
    for (index, line) in text.lines().enumerate() {
        let marker = ["---", "..."]
            .into_iter()
            .find(|m| line.strip_prefix(m).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '#'])));
        match marker {
            Some(marker) => {
                out.push((start, std::mem::take(&mut chunk)));
                // `--- {a: 1}`: the rest of the line belongs to the next document.
                let rest = &line[marker.len()..];
                start = index + 1;
                if rest.trim().starts_with('#') || rest.trim().is_empty() {
                    start = index + 2;
                } else {
                    chunk.push_str(rest);
                    chunk.push('\n');
                }
            }
            None => {
                chunk.push_str(line);
                chunk.push('\n');
            }
        }
    }
    out.push((start, chunk));
    out.retain(|(_, c)| !c.lines().all(is_blank_or_comment));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Vec<InputError>) {
        let (mut documents, mut errors) = (Vec::new(), Vec::new());
        parse_into("m.yaml", text, &mut documents, &mut errors);
        (documents, errors)
    }

    #[test]
    fn multi_document_yaml_with_lines() {
        let text = "# Source: chart/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
                    # only a comment\n---\n# Source: b\n\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n\
                    ...\n--- {apiVersion: v1, kind: Secret, metadata: {name: c}}\n";
        let (docs, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let found: Vec<_> =
            docs.iter().map(|d| (d.line, d.object["metadata"]["name"].as_str().unwrap_or(""))).collect();
        assert_eq!(found, [(2, "a"), (10, "b"), (15, "c")]);
    }

    #[test]
    fn json_streams_arrays_and_lists() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n  {\"apiVersion\": \"v1\", \"kind\": \"Pod\", \
                    \"metadata\": {\"name\": \"p\"}}]}\n\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"q\"}}\n";
        let (docs, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let found: Vec<_> =
            docs.iter().map(|d| (d.line, d.object["metadata"]["name"].as_str().unwrap_or(""))).collect();
        assert_eq!(found, [(1, "p"), (4, "q")]);
        let (docs, _) =
            parse("kind: PodList\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: r}}\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let (docs, errors) =
            parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [oops\n---\nfoo: 1\n");
        assert!(
            matches!(errors.as_slice(), [InputError::Syntax { line: 7, .. }, InputError::NotAnObject { line: 8, .. }]),
            "{errors:?}"
        );
        assert!(errors[0].to_string().contains("at line 7 column"), "{}", errors[0]);
        assert_eq!(docs.len(), 1);
        let (_, errors) = parse("---\nfoo: bar\n");
        assert!(matches!(errors.as_slice(), [InputError::NotAnObject { line: 2, .. }]), "{errors:?}");
        assert!(errors[0].to_string().contains("apiVersion and kind are required"));
        let (_, errors) = parse("{\"apiVersion\": \"v1\",\n \"kind\": }");
        assert!(matches!(errors.as_slice(), [InputError::Syntax { line: 2, format: "JSON", .. }]), "{errors:?}");
        let (docs, errors) = parse("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n");
        assert!(docs.is_empty() && errors.is_empty());
    }
}
