//! The attestation example policies in `policies/`, evaluated against inline documents and the
//! real SBOMs, SLSA statements and cosign predicates of the shared fixtures.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::cel::{CelEnv, CelError};
use super::compile::parse_file;
use super::sbom::tests::fixture as sbom_fixture;
use super::{AuthorityKind, ImagePolicy, KeyRef, Policy, sbom};
use crate::image::ImageRef;

const SBOM_POLICY: &str = include_str!("../../policies/sbom-deny-list.yaml");
const SLSA_POLICY: &str = include_str!("../../policies/slsa-provenance.yaml");
const VULN_POLICY: &str = include_str!("../../policies/vuln-report.yaml");
const RELEASE_KEY: &str = include_str!("../../policies/keys/release.pub");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");

fn policies(file: &str, text: &str) -> Vec<ImagePolicy> {
    let parsed = parse_file(text, file, Path::new("policies"), &CelEnv::new()).expect(file);
    parsed
        .into_iter()
        .map(|p| match p {
            Policy::Image(p) => p,
            Policy::Resource(p) => panic!("{file}: {} is not an ImagePolicy", p.name),
        })
        .collect()
}

fn policy(file: &str, text: &str, name: &str) -> ImagePolicy {
    policies(file, text).into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{file}: no policy {name}"))
}

fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("time").with_timezone(&Utc)
}

/// Evaluate the policy's (single) attestation conditions on a statement, binding the variables
/// the verifier binds: `predicate`, `statement`, `image`, `sbom` and `now`.
fn evaluate(policy: &ImagePolicy, statement: &Value, now: DateTime<Utc>) -> Vec<Result<bool, CelError>> {
    assert_eq!(policy.attestations.len(), 1, "{}", policy.name);
    let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
    let predicate = &statement["predicate"];
    let sbom = sbom::variable(predicate_type, predicate).expect("within the limits");
    let digest = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";
    let image = json!({"registry": "registry.example.com", "repository": "app", "digest": digest,
                       "reference": format!("registry.example.com/app@{digest}")});
    let vars = [("predicate", predicate), ("statement", statement), ("image", &image), ("sbom", &sbom)];
    // Converted once for all the conditions, as the verifier should.
    let bindings = CelEnv::new().bind(&vars, now).expect("binds");
    let outcomes: Vec<_> =
        policy.attestations[0].conditions.iter().map(|c| c.expression.eval_bool_in(&bindings)).collect();
    let one_by_one: Vec<_> =
        policy.attestations[0].conditions.iter().map(|c| c.expression.eval_bool_at(&vars, now)).collect();
    assert_eq!(outcomes, one_by_one);
    outcomes
}

/// The messages of the conditions that are false; evaluation errors panic (use [`evaluate`]).
fn failures(policy: &ImagePolicy, statement: &Value, now: DateTime<Utc>) -> Vec<String> {
    let outcomes = evaluate(policy, statement, now);
    let conditions = &policy.attestations[0].conditions;
    outcomes
        .into_iter()
        .zip(conditions)
        .filter_map(|(outcome, c)| match outcome {
            Ok(true) => None,
            Ok(false) => Some(c.message.clone().unwrap_or_default()),
            Err(e) => panic!("{}: {e}", policy.name),
        })
        .collect()
}

fn statement(predicate_type: &str, predicate: Value) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example.com/app", "digest": {"sha256": "5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

#[test]
fn examples_compile_with_the_release_key() {
    let all: Vec<ImagePolicy> = [
        ("sbom-deny-list.yaml", SBOM_POLICY),
        ("slsa-provenance.yaml", SLSA_POLICY),
        ("vuln-report.yaml", VULN_POLICY),
    ]
    .into_iter()
    .flat_map(|(file, text)| policies(file, text))
    .collect();
    let summary: Vec<(&str, &str)> =
        all.iter().map(|p| (p.name.as_str(), p.attestations[0].predicate_type.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("sbom-deny-list", "https://cyclonedx.org/bom"),
            ("sbom-deny-list-spdx", "https://spdx.dev/Document"),
            ("slsa-provenance", "https://slsa.dev/provenance/v1"),
            ("slsa-provenance-v02", "https://slsa.dev/provenance/v0.2"),
            ("vuln-report", "https://cosign.sigstore.dev/attestation/vuln/v1"),
        ]
    );
    for p in &all {
        assert!(
            matches!(&p.authorities[0].kind, AuthorityKind::Key(KeyRef::File(f)) if f == Path::new("policies/keys/release.pub"))
        );
    }
    // The committed key is a P-256 public key (SubjectPublicKeyInfo, named curve prime256v1).
    use base64::Engine as _;
    let body: String = RELEASE_KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(RELEASE_KEY.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("base64");
    assert_eq!(der.len(), 91);
    assert!(der.windows(10).any(|w| w == [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]));

    // Each image gets exactly one SBOM policy and one provenance policy; the admission test
    // fixtures' images get none.
    let applying = |image: &str| -> Vec<&str> {
        let image: ImageRef = image.parse().expect("image");
        all.iter().filter(|p| p.applies_to(&image)).map(|p| p.name.as_str()).collect()
    };
    assert_eq!(applying("registry.example.com/app:v1"), ["sbom-deny-list", "slsa-provenance", "vuln-report"]);
    assert_eq!(applying("registry.example.com/spdx/db:v1"), ["sbom-deny-list-spdx", "slsa-provenance", "vuln-report"]);
    assert_eq!(applying("registry.example.com/legacy/a/b"), ["sbom-deny-list", "slsa-provenance-v02", "vuln-report"]);
    for image in ["ghcr.io/acme/web:v1.4.2", "busybox:1.36", "registry.example.org/app"] {
        assert!(applying(image).is_empty(), "{image}");
    }
}

fn cyclonedx(components: Value) -> Value {
    statement(
        "https://cyclonedx.org/bom/v1.5",
        json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components}),
    )
}

const LOG4J: &str = "log4j-core before 2.17.1 is denied (Log4Shell: CVE-2021-44228, CVE-2021-45046, CVE-2021-44832)";
const EVENT_STREAM: &str = "event-stream 3.3.6 is denied (compromised release carrying flatmap-stream)";
const LICENSE: &str = "a package is licensed under AGPL-3.0 or SSPL-1.0, which are denied";

#[test]
fn sbom_deny_list_inline() {
    let p = policy("sbom-deny-list.yaml", SBOM_POLICY, "sbom-deny-list");
    let now = Utc::now();
    let lib = |name: &str, version: &str, license: &str| json!({"type": "library", "name": name, "version": version, "licenses": [{"license": {"id": license}}]});
    let clean = cyclonedx(json!([lib("log4j-core", "2.17.1", "Apache-2.0"), lib("event-stream", "3.3.5", "MIT")]));
    assert_eq!(failures(&p, &clean, now), Vec::<String>::new());
    let log4shell = cyclonedx(json!([lib("log4j-core", "2.14.1", "Apache-2.0")]));
    assert_eq!(failures(&p, &log4shell, now), [LOG4J]);
    // Found by purl whatever its display name, and nested inside another component.
    let nested = cyclonedx(json!([{"name": "app", "components": [{
        "name": "Apache Log4j Core", "version": "v2.16", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.16.0?type=jar"}]}]));
    assert_eq!(failures(&p, &nested, now), [LOG4J]);
    let event_stream = cyclonedx(json!([lib("event-stream", "3.3.6", "MIT")]));
    assert_eq!(failures(&p, &event_stream, now), [EVENT_STREAM]);
    let agpl =
        cyclonedx(json!([{"name": "db", "version": "1.0.0", "licenses": [{"expression": "MIT OR AGPL-3.0-only"}]}]));
    assert_eq!(failures(&p, &agpl, now), [LICENSE]);
    let sspl = cyclonedx(json!([lib("mongo", "6.0.0", "SSPL-1.0"), lib("log4j-core", "2.0", "Apache-2.0")]));
    assert_eq!(failures(&p, &sspl, now), [LOG4J, LICENSE]);
    // A log4j-core whose version cannot be compared is a check that could not be made.
    let odd = cyclonedx(json!([lib("log4j-core", "2.x", "Apache-2.0")]));
    let outcomes = evaluate(&p, &odd, now);
    assert!(matches!(&outcomes[1], Err(CelError::Eval { message, .. }) if message.contains("2.x")), "{outcomes:?}");
    // A predicate that is not a CycloneDX document fails the first rule only.
    let not_sbom = statement("https://cyclonedx.org/bom", json!({"spdxVersion": "SPDX-2.3", "packages": []}));
    assert_eq!(failures(&p, &not_sbom, now), ["the SBOM attestation is not a CycloneDX JSON document"]);
}

#[test]
fn sbom_deny_list_spdx_inline() {
    let p = policy("sbom-deny-list.yaml", SBOM_POLICY, "sbom-deny-list-spdx");
    let now = Utc::now();
    let spdx = |packages: Value| {
        statement("https://spdx.dev/Document", json!({"spdxVersion": "SPDX-2.3", "packages": packages}))
    };
    let clean = spdx(json!([{"name": "log4j-core", "versionInfo": "2.17.2", "licenseDeclared": "Apache-2.0"}]));
    assert_eq!(failures(&p, &clean, now), Vec::<String>::new());
    let bad = spdx(json!([
        {"name": "log4j-core", "versionInfo": "2.15.0", "licenseConcluded": "NOASSERTION"},
        {"name": "event-stream", "versionInfo": "3.3.6"},
        {"name": "x", "licenseConcluded": "(MIT AND SSPL-1.0)"}
    ]));
    assert_eq!(failures(&p, &bad, now), [LOG4J, EVENT_STREAM, LICENSE]);
    let cdx = cyclonedx(json!([]));
    let as_spdx = statement("https://spdx.dev/Document", cdx["predicate"].clone());
    assert_eq!(failures(&p, &as_spdx, now), ["the SBOM attestation is not an SPDX JSON document"]);
}

/// Add a vulnerable log4j-core to a real SBOM, in its own format.
fn with_log4shell(doc: &mut Value) {
    if let Some(components) = doc["components"].as_array_mut() {
        components.push(json!({"type": "library", "name": "log4j-core", "version": "2.14.1"}));
    } else if let Some(packages) = doc["packages"].as_array_mut() {
        packages.push(json!({"name": "log4j-core", "versionInfo": "2.14.1", "SPDXID": "SPDXRef-log4j"}));
    } else if let Some(graph) = doc["@graph"].as_array_mut() {
        graph.push(json!({"spdxId": "urn:log4j", "type": "software_Package", "name": "log4j-core", "software_packageVersion": "2.14.1"}));
    } else {
        doc["components"] = json!([{"type": "library", "name": "log4j-core", "version": "2.14.1"}]);
    }
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn sbom_deny_list_on_real_documents() {
    let now = Utc::now();
    let cases = [
        ("sbom-deny-list", "https://cyclonedx.org/bom", "cyclonedx/SBOM_cern-lhc-vdm-editor-e564943_bom.json"),
        ("sbom-deny-list", "https://cyclonedx.org/bom", "cyclonedx/SBOM_dropwizard-1.3.15_bom.json"),
        ("sbom-deny-list", "https://cyclonedx.org/bom/v1.4", "cyclonedx/SBOM_laravel-7.12.0_bom.1.4.json"),
        ("sbom-deny-list", "https://cyclonedx.org/bom", "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json"),
        (
            "sbom-deny-list",
            "https://cyclonedx.org/bom",
            "cyclonedx/SaaSBOM_apigateway-microservices-datastores_bom.json",
        ),
        ("sbom-deny-list-spdx", "https://spdx.dev/Document/v2.3", "spdx/software_example11_spdx2.3_sbom.spdx.json"),
        (
            "sbom-deny-list-spdx",
            "https://spdx.dev/Document",
            "spdx/software_example14_spdx2.3_examplemaven-0.0.1-enriched.spdx.json",
        ),
        (
            "sbom-deny-list-spdx",
            "https://spdx.dev/Document",
            "spdx/presentations_SBOMS-SPDX-Now-and-Future_ACME-v2.3.spdx.json",
        ),
        ("sbom-deny-list-spdx", "https://spdx.dev/Document", "spdx/software_example7_spdx2.2_example7-bin.spdx.json"),
        ("sbom-deny-list-spdx", "https://spdx.dev/Document", "spdx/software_example11_spdx3.0_sbom.spdx3.json"),
    ];
    for (name, predicate_type, file) in cases {
        let p = policy("sbom-deny-list.yaml", SBOM_POLICY, name);
        let mut doc = sbom_fixture(file);
        assert_eq!(failures(&p, &statement(predicate_type, doc.clone()), now), Vec::<String>::new(), "{file}");
        with_log4shell(&mut doc);
        assert_eq!(failures(&p, &statement(predicate_type, doc), now), [LOG4J], "{file}");
    }
}

/// A SLSA fixture (tests reading one are ignored when the shared fixtures are absent).
fn slsa_fixture(file: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/slsa/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A JSON document with every occurrence of `from` replaced.
fn replaced(doc: &Value, pairs: &[(&str, &str)]) -> Value {
    let mut text = doc.to_string();
    for (from, to) in pairs {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).expect("still JSON")
}

const BUILDER_V1: &str = "the image was not built by acme/app's release workflow";
const REPOSITORY_V1: &str = "the build did not run from github.com/acme/app";
const SOURCE: &str = "the build's source is not github.com/acme/app";
const BUILDER_V02: &str = "the image was not built by the SLSA GitHub generator (container workflow, a release tag)";

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn slsa_v1() {
    let p = policy("slsa-provenance.yaml", SLSA_POLICY, "slsa-provenance");
    let now = Utc::now();
    let good = statement(
        "https://slsa.dev/provenance/v1",
        json!({
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/tags/v1.2.0", "repository": "https://github.com/acme/app", "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/tags/v1.2.0", "digest": {"gitCommit": "1ac93ce21ee526b36fd154b9058d97dfaa424c50"}}]
            },
            "runDetails": {"builder": {"id": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0"}}
        }),
    );
    assert_eq!(failures(&p, &good, now), Vec::<String>::new());
    let fork = replaced(&good, &[("github.com/acme/app", "github.com/attacker/app")]);
    assert_eq!(failures(&p, &fork, now), [BUILDER_V1, REPOSITORY_V1, SOURCE]);
    let other_workflow = replaced(&good, &[("release.yml@", "debug.yml@")]);
    assert_eq!(failures(&p, &other_workflow, now), [BUILDER_V1]);
    // A v0.2 predicate has none of these fields: every check fails to evaluate (fail closed).
    let v02 = statement("https://slsa.dev/provenance/v1", json!({"builder": {"id": "x"}}));
    assert!(evaluate(&p, &v02, now).iter().all(|o| matches!(o, Err(CelError::Eval { .. }))));

    // Real statements: GitHub artifact attestations (octo-org) and npm provenance (sigstore-js).
    let octo = slsa_fixture("slsa_predicate_v1_0.json");
    let octo = statement("https://slsa.dev/provenance/v1", octo);
    assert_eq!(failures(&p, &octo, now), [BUILDER_V1, REPOSITORY_V1, SOURCE]);
    let ours = replaced(&octo, &[("octo-org/octo-repo", "acme/app"), ("docker.yaml", "release.yml")]);
    assert_eq!(failures(&p, &ours, now), Vec::<String>::new());
    let npm = slsa_fixture("npm-sigstore-2.0.0.provenance-v1.statement.json");
    assert_eq!(failures(&p, &npm, now), [BUILDER_V1, REPOSITORY_V1, SOURCE]);
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn slsa_v02() {
    let p = policy("slsa-provenance.yaml", SLSA_POLICY, "slsa-provenance-v02");
    let now = Utc::now();
    let generator =
        "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml";
    let good = statement(
        "https://slsa.dev/provenance/v0.2",
        json!({
            "builder": {"id": format!("{generator}@refs/tags/v2.1.0")},
            "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/heads/main", "entryPoint": ".github/workflows/release.yml"}}
        }),
    );
    assert_eq!(failures(&p, &good, now), Vec::<String>::new());
    let branch_builder = replaced(&good, &[("@refs/tags/v2.1.0", "@refs/heads/main")]);
    assert_eq!(failures(&p, &branch_builder, now), [BUILDER_V02], "the generator is trusted at release tags only");

    let v210 = slsa_fixture("slsa-github-generator-container-v2.1.0.provenance-v0.2.statement.json");
    assert_eq!(failures(&p, &v210, now), [SOURCE], "the real generator, another repository");
    let ours = replaced(&v210, &[("slsa-framework/example-package", "acme/app")]);
    assert_eq!(failures(&p, &ours, now), Vec::<String>::new());
    let v110 = slsa_fixture("slsa-github-generator-container-v1.10.0.provenance-v0.2.statement.json");
    let ours = replaced(&v110, &[("slsa-framework/example-package", "acme/app")]);
    assert_eq!(failures(&p, &ours, now), Vec::<String>::new());
    for file in [
        "npm-sigstore-1.3.0.provenance-v0.2.statement.json",
        "slsa-provenance-0.0.7.tgz.provenance-v0.2.statement.json",
    ] {
        let npm = slsa_fixture(file);
        assert_eq!(failures(&p, &npm, now), [BUILDER_V02, SOURCE], "{file}");
    }
}

const STALE: &str = "the vulnerability scan is older than 7 days; scan the image again";
const NO_REPORT: &str = "the scan attestation carries no Trivy JSON report (scanner.result.Results)";
const CRITICAL: &str = "the scan found CRITICAL vulnerabilities";

fn vuln(result: Value, finished: &str) -> Value {
    statement(
        "https://cosign.sigstore.dev/attestation/vuln/v1",
        json!({
            "invocation": {"parameters": null, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.57.1", "version": "0.57.1", "db": {"uri": "", "version": ""}, "result": result},
            "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished}
        }),
    )
}

/// A Trivy JSON report with one OS-package vulnerability per severity.
fn trivy(severities: &[&str]) -> Value {
    let vulnerabilities: Vec<Value> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i:04}"), "PkgName": "openssl", "Severity": s}))
        .collect();
    json!({"SchemaVersion": 2, "ArtifactName": "registry.example.com/app", "Results": [
        {"Target": "registry.example.com/app (debian 12.8)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulnerabilities},
        {"Target": "app/go.mod", "Class": "lang-pkgs", "Type": "gomod"}
    ]})
}

#[test]
fn vuln_report() {
    let p = policy("vuln-report.yaml", VULN_POLICY, "vuln-report");
    let now = time("2026-11-22T12:00:00Z");
    let fresh = "2026-11-21T08:00:00Z";
    assert_eq!(failures(&p, &vuln(trivy(&["HIGH", "MEDIUM", "LOW"]), fresh), now), Vec::<String>::new());
    assert_eq!(failures(&p, &vuln(trivy(&[]), fresh), now), Vec::<String>::new());
    assert_eq!(failures(&p, &vuln(trivy(&["LOW", "CRITICAL"]), fresh), now), [CRITICAL]);
    assert_eq!(failures(&p, &vuln(trivy(&["HIGH"]), "2026-11-15T11:59:59Z"), now), [STALE], "just over 7 days");
    assert_eq!(failures(&p, &vuln(trivy(&["HIGH"]), "2026-11-15T12:00:01Z"), now), Vec::<String>::new());
    assert_eq!(failures(&p, &vuln(json!(null), fresh), now), [NO_REPORT]);
    assert_eq!(failures(&p, &vuln(json!({"matches": []}), fresh), now), [NO_REPORT], "not a Trivy report");
    // Shapes no scanner writes fail to evaluate (fail closed), never pass.
    let odd = evaluate(&p, &vuln(json!({"Results": null}), fresh), now);
    assert!(matches!(odd[2], Err(CelError::Eval { .. })), "{odd:?}");
    let undated = evaluate(&p, &vuln(trivy(&[]), "last tuesday"), now);
    assert!(matches!(undated[0], Err(CelError::Eval { .. })), "{undated:?}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn vuln_report_on_cosigns_test_predicate() {
    let p = policy("vuln-report.yaml", VULN_POLICY, "vuln-report");
    let now = time("2026-11-22T12:00:00Z");
    // cosign's own test predicate: a scan without a result, finished 2022-04-12T00:10:00Z.
    let dir = format!("{FIXTURES}/cosign/attestations");
    let text = std::fs::read_to_string(format!("{dir}/vuln-predicate.json")).expect("vuln-predicate.json");
    let predicate: Value = serde_json::from_str(&text).expect("JSON");
    let cosign = statement("https://cosign.sigstore.dev/attestation/vuln/v1", predicate);
    assert_eq!(failures(&p, &cosign, time("2022-04-13T00:00:00Z")), [NO_REPORT]);
    assert_eq!(failures(&p, &cosign, now), [STALE, NO_REPORT]);
    let mut scanned = cosign.clone();
    scanned["predicate"]["scanner"]["result"] = trivy(&["CRITICAL"]);
    assert_eq!(failures(&p, &scanned, time("2022-04-19T00:09:59Z")), [CRITICAL]);
    assert_eq!(failures(&p, &scanned, time("2022-04-19T00:10:00Z")), [STALE, CRITICAL], "exactly 7 days is too old");
}
