//! SBOM attestations → one normalised package list for policy conditions (pure).
//!
//! CycloneDX JSON (1.2–1.6) and SPDX JSON (2.2, 2.3, and 3.0 JSON-LD) describe packages
//! differently; conditions should not have to care. [`parse`] turns either into a list of
//! [`Package`]s, which conditions see as `sbom.packages`:
//!
//! ```json
//! {"name": "log4j-core", "version": "2.14.1", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
//!  "licenses": ["Apache-2.0"], "type": "library"}
//! ```
//!
//! Every field is always present: a missing text is `""`, missing licenses are `[]`, so a condition
//! needs no `has()`. `type` is lowercase (`library`, `application`, `container`, ...).
//!
//! - **CycloneDX**: `metadata.component` (the subject itself) and `components`, with their nested
//!   `components` at any depth, in document order. Licenses come from `licenses[].license.id`
//!   (or `.name`, kept whole) and `licenses[].expression`.
//! - **SPDX 2.x**: `packages[]`: `name`, `versionInfo`, the first `externalRefs[]` of
//!   `referenceType: purl`, `primaryPackagePurpose`; licenses from `licenseConcluded` and
//!   `licenseDeclared`.
//! - **SPDX 3.0**: `@graph` elements of type `software_Package` (`software_packageVersion`,
//!   `software_packageUrl` or a `packageUrl` external identifier, `software_primaryPurpose`);
//!   licenses through `hasConcludedLicense` / `hasDeclaredLicense` relationships to license
//!   expression elements.
//!
//! License expressions are split into their identifiers on `AND`, `OR`, `WITH` and parentheses:
//! `(MIT OR Apache-2.0) AND GPL-2.0-only WITH Classpath-exception-2.0` gives `MIT`,
//! `Apache-2.0`, `GPL-2.0-only`, `Classpath-exception-2.0`. A deny list therefore also matches
//! one side of a choice (`MIT OR AGPL-3.0-only` lists `AGPL-3.0-only`). `NOASSERTION` and `NONE`
//! are dropped; duplicates are listed once.
//!
//! The format is decided by the predicate type (`https://cyclonedx.org/bom`,
//! `https://spdx.dev/Document`, or a versioned form such as `https://cyclonedx.org/bom/v1.5`)
//! **and** the document's own marker (`bomFormat: CycloneDX`, `spdxVersion: SPDX-2.x`, an SPDX
//! 3 `@graph`); when they disagree, or for any other predicate, there is no SBOM. Documents with
//! more than [`MAX_PACKAGES`] packages or components nested deeper than [`MAX_DEPTH`] are
//! errors rather than silently truncated lists: a deny list must see every package.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

/// Most packages one SBOM may list.
pub const MAX_PACKAGES: usize = 100_000;
/// Deepest nesting of CycloneDX `components` (the top-level list is depth 1).
pub const MAX_DEPTH: usize = 64;

/// An SBOM document that cannot be used whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbomError {
    #[error("the SBOM lists more than {limit} packages")]
    TooManyPackages { limit: usize },
    #[error("the SBOM nests components more than {limit} levels deep")]
    TooDeep { limit: usize },
}

/// The SBOM formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomFormat {
    CycloneDx,
    Spdx,
}

impl SbomFormat {
    /// The name conditions see as `sbom.format`: `cyclonedx` or `spdx`.
    pub fn as_str(self) -> &'static str {
        match self {
            SbomFormat::CycloneDx => "cyclonedx",
            SbomFormat::Spdx => "spdx",
        }
    }
}

/// One package, normalised across formats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub purl: String,
    pub licenses: Vec<String>,
    /// CycloneDX `type`, SPDX `primaryPackagePurpose`, lowercase.
    pub kind: String,
}

impl Package {
    /// `{name, version, purl, licenses, type}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "version": self.version,
            "purl": self.purl,
            "licenses": self.licenses,
            "type": self.kind,
        })
    }
}

/// A parsed SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    pub format: SbomFormat,
    /// `1.5`, `2.3`, `3.0.1`, ... (empty if the document does not say).
    pub spec_version: String,
    pub packages: Vec<Package>,
}

impl Sbom {
    /// The `sbom` variable of conditions: `{format, specVersion, packages}`.
    pub fn to_json(&self) -> Value {
        json!({
            "format": self.format.as_str(),
            "specVersion": self.spec_version,
            "packages": self.packages_json(),
        })
    }

    /// The packages as a JSON list.
    pub fn packages_json(&self) -> Value {
        Value::Array(self.packages.iter().map(Package::to_json).collect())
    }
}

/// The normalised package list of an SBOM predicate, or `None` if the predicate is not a
/// CycloneDX or SPDX JSON document (or is too large to use; [`parse`] says why).
pub fn packages(predicate_type: &str, predicate: &Value) -> Option<Value> {
    parse(predicate_type, predicate).ok().flatten().map(|sbom| sbom.packages_json())
}

/// The `sbom` variable for a predicate: `{format, specVersion, packages}`, or null when the
/// predicate is not an SBOM.
pub fn variable(predicate_type: &str, predicate: &Value) -> Result<Value, SbomError> {
    Ok(parse(predicate_type, predicate)?.map_or(Value::Null, |sbom| sbom.to_json()))
}

/// Parse an SBOM predicate. `Ok(None)`: not an SBOM this module understands.
pub fn parse(predicate_type: &str, predicate: &Value) -> Result<Option<Sbom>, SbomError> {
    let Some(doc) = predicate.as_object() else { return Ok(None) };
    let sbom = match detect(predicate_type, predicate) {
        Some(Detected::CycloneDx) => Sbom {
            format: SbomFormat::CycloneDx,
            spec_version: text(doc.get("specVersion")),
            packages: cyclonedx(doc)?,
        },
        Some(Detected::Spdx2) => Sbom {
            format: SbomFormat::Spdx,
            spec_version: text(doc.get("spdxVersion")).trim_start_matches("SPDX-").to_owned(),
            packages: spdx2(doc)?,
        },
        Some(Detected::Spdx3(graph)) => {
            Sbom { format: SbomFormat::Spdx, spec_version: spdx3_version(graph), packages: spdx3(graph)? }
        }
        None => return Ok(None),
    };
    Ok(Some(sbom))
}

/// The format of an SBOM predicate, if the predicate type and the document agree on one.
pub fn format(predicate_type: &str, predicate: &Value) -> Option<SbomFormat> {
    detect(predicate_type, predicate).map(|d| match d {
        Detected::CycloneDx => SbomFormat::CycloneDx,
        Detected::Spdx2 | Detected::Spdx3(_) => SbomFormat::Spdx,
    })
}

enum Detected<'a> {
    CycloneDx,
    Spdx2,
    Spdx3(&'a [Value]),
}

fn detect<'a>(predicate_type: &str, predicate: &'a Value) -> Option<Detected<'a>> {
    let doc = predicate.as_object()?;
    let uri = predicate_type.trim().trim_start_matches("https://").trim_start_matches("http://");
    let family = |base: &str| uri == base || uri.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'));
    let graph = doc.get("@graph").and_then(Value::as_array);
    if family("cyclonedx.org/bom") {
        let marker = doc.get("bomFormat").and_then(Value::as_str);
        let other = doc.contains_key("spdxVersion") || graph.is_some();
        return (marker == Some("CycloneDX") && !other).then_some(Detected::CycloneDx);
    }
    if family("spdx.dev/Document") {
        if doc.contains_key("bomFormat") {
            return None;
        }
        if let Some(version) = doc.get("spdxVersion") {
            return (version.as_str()?.starts_with("SPDX-2.") && graph.is_none()).then_some(Detected::Spdx2);
        }
        let graph = graph?;
        let spdx_context = match doc.get("@context") {
            Some(Value::String(c)) => c.contains("spdx.org/rdf/3"),
            Some(Value::Array(cs)) => cs.iter().filter_map(Value::as_str).any(|c| c.contains("spdx.org/rdf/3")),
            _ => false,
        };
        let spdx_elements = graph.iter().any(|e| matches!(kind(e), "SpdxDocument" | "software_Package"));
        return (spdx_context || spdx_elements).then_some(Detected::Spdx3(graph));
    }
    None
}

fn cyclonedx(doc: &Map<String, Value>) -> Result<Vec<Package>, SbomError> {
    let mut packages = Vec::new();
    // Depth-first in document order without recursion: the stack holds (component, depth).
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    if let Some(list) = doc.get("components").and_then(Value::as_array) {
        stack.extend(list.iter().rev().map(|c| (c, 1)));
    }
    if let Some(subject) = doc.get("metadata").and_then(|m| m.get("component")) {
        stack.push((subject, 1));
    }
    while let Some((component, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(SbomError::TooDeep { limit: MAX_DEPTH });
        }
        let Some(c) = component.as_object() else { continue };
        let mut licenses = Vec::new();
        for entry in c.get("licenses").and_then(Value::as_array).into_iter().flatten() {
            if let Some(license) = entry.get("license") {
                match (license.get("id").and_then(Value::as_str), license.get("name").and_then(Value::as_str)) {
                    (Some(id), _) => split_expression(id, &mut licenses),
                    (None, Some(name)) if !name.trim().is_empty() => licenses.push(name.trim().to_owned()),
                    _ => {}
                }
            }
            if let Some(expression) = entry.get("expression").and_then(Value::as_str) {
                split_expression(expression, &mut licenses);
            }
        }
        push(
            &mut packages,
            Package {
                name: text(c.get("name")),
                version: text(c.get("version")),
                purl: text(c.get("purl")),
                licenses,
                kind: text(c.get("type")).to_ascii_lowercase(),
            },
        )?;
        if let Some(children) = c.get("components").and_then(Value::as_array) {
            stack.extend(children.iter().rev().map(|child| (child, depth + 1)));
        }
    }
    Ok(packages)
}

fn spdx2(doc: &Map<String, Value>) -> Result<Vec<Package>, SbomError> {
    let mut packages = Vec::new();
    for p in doc.get("packages").and_then(Value::as_array).into_iter().flatten() {
        let Some(p) = p.as_object() else { continue };
        let purl = p
            .get("externalRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("referenceType").and_then(Value::as_str) == Some("purl"))
            .map(|r| text(r.get("referenceLocator")))
            .unwrap_or_default();
        let mut licenses = Vec::new();
        for field in ["licenseConcluded", "licenseDeclared"] {
            if let Some(expression) = p.get(field).and_then(Value::as_str) {
                split_expression(expression, &mut licenses);
            }
        }
        push(
            &mut packages,
            Package {
                name: text(p.get("name")),
                version: text(p.get("versionInfo")),
                purl,
                licenses,
                kind: text(p.get("primaryPackagePurpose")).to_ascii_lowercase(),
            },
        )?;
    }
    Ok(packages)
}

fn spdx3(graph: &[Value]) -> Result<Vec<Package>, SbomError> {
    // License elements by id, then the license ids each element points at.
    let mut license_texts: HashMap<&str, String> = HashMap::new();
    for element in graph {
        let id = element_id(element);
        match kind(element) {
            "simplelicensing_LicenseExpression" => {
                license_texts.insert(id, text(element.get("simplelicensing_licenseExpression")));
            }
            "expandedlicensing_ListedLicense" | "expandedlicensing_CustomLicense" => {
                let short = id.rsplit('/').next().unwrap_or(id);
                license_texts.insert(id, short.to_owned());
            }
            _ => {}
        }
    }
    let mut licensed: HashMap<&str, Vec<&str>> = HashMap::new();
    for element in graph {
        let relationship = element.get("relationshipType").and_then(Value::as_str);
        if !matches!(relationship, Some("hasConcludedLicense" | "hasDeclaredLicense")) {
            continue;
        }
        let Some(from) = element.get("from").and_then(Value::as_str) else { continue };
        let targets = match element.get("to") {
            Some(Value::Array(to)) => to.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(to)) => vec![to.as_str()],
            _ => Vec::new(),
        };
        licensed.entry(from).or_default().extend(targets);
    }
    let mut packages = Vec::new();
    for element in graph.iter().filter(|e| kind(e) == "software_Package") {
        let mut licenses = Vec::new();
        for target in licensed.get(element_id(element)).into_iter().flatten() {
            if let Some(expression) = license_texts.get(target) {
                split_expression(expression, &mut licenses);
            }
        }
        let purl = match element.get("software_packageUrl").and_then(Value::as_str) {
            Some(purl) => purl.to_owned(),
            None => element
                .get("externalIdentifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|x| x.get("externalIdentifierType").and_then(Value::as_str) == Some("packageUrl"))
                .map(|x| text(x.get("identifier")))
                .unwrap_or_default(),
        };
        push(
            &mut packages,
            Package {
                name: text(element.get("name")),
                version: text(element.get("software_packageVersion")),
                purl,
                licenses,
                kind: text(element.get("software_primaryPurpose")).to_ascii_lowercase(),
            },
        )?;
    }
    Ok(packages)
}

fn spdx3_version(graph: &[Value]) -> String {
    graph
        .iter()
        .filter(|e| kind(e) == "CreationInfo")
        .find_map(|e| e.get("specVersion").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

/// An SPDX 3 element's `type` (or `@type`).
fn kind(element: &Value) -> &str {
    element.get("type").or_else(|| element.get("@type")).and_then(Value::as_str).unwrap_or_default()
}

/// An SPDX 3 element's `spdxId` (or `@id`).
fn element_id(element: &Value) -> &str {
    element.get("spdxId").or_else(|| element.get("@id")).and_then(Value::as_str).unwrap_or_default()
}

fn push(packages: &mut Vec<Package>, mut package: Package) -> Result<(), SbomError> {
    if packages.len() >= MAX_PACKAGES {
        return Err(SbomError::TooManyPackages { limit: MAX_PACKAGES });
    }
    let mut seen = HashSet::new();
    package.licenses.retain(|l| seen.insert(l.clone()));
    packages.push(package);
    Ok(())
}

/// A string field as text (numbers too: `"version": 2` happens); anything else is `""`.
fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The license identifiers of an SPDX license expression (see the module documentation).
fn split_expression(expression: &str, out: &mut Vec<String>) {
    let tokens = expression.split(|c: char| c.is_whitespace() || c == '(' || c == ')');
    for token in tokens.filter(|t| !t.is_empty()) {
        let operator = ["AND", "OR", "WITH"].iter().any(|op| token.eq_ignore_ascii_case(op));
        if !operator && token != "NOASSERTION" && token != "NONE" {
            out.push(token.to_owned());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
