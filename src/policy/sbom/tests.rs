use serde_json::json;

use super::*;

const CDX: &str = "https://cyclonedx.org/bom";
const SPDX: &str = "https://spdx.dev/Document";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/sbom");

fn names(packages: &Value) -> Vec<&str> {
    packages.as_array().expect("list").iter().map(|p| p["name"].as_str().expect("name")).collect()
}

fn cyclonedx_doc() -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {"component": {"type": "container", "name": "registry.example.com/app", "version": "sha256:abc"}},
        "components": [
            {
                "type": "library", "name": "log4j-core", "group": "org.apache.logging.log4j", "version": "2.14.1",
                "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                "licenses": [{"license": {"id": "Apache-2.0"}}],
                "components": [
                    {"type": "LIBRARY", "name": "nested", "version": "1.0.0",
                     "licenses": [{"expression": "(MIT OR AGPL-3.0-only) AND Apache-2.0"}],
                     "components": [{"name": "deeper", "licenses": [{"license": {"name": "Custom License v1"}}]}]}
                ]
            },
            {"type": "library", "name": "event-stream", "version": "3.3.6", "purl": "pkg:npm/event-stream@3.3.6",
             "licenses": [{"license": {"id": "MIT"}}, {"license": {"id": "MIT"}}, {"license": {"name": "NOASSERTION", "id": "NOASSERTION"}}]},
            "not an object",
            {"name": 7, "version": 2}
        ]
    })
}

#[test]
fn cyclonedx_components_are_flattened_in_order() {
    for predicate_type in [CDX, "https://cyclonedx.org/bom/v1.5", "http://cyclonedx.org/bom/1.6"] {
        let packages = packages(predicate_type, &cyclonedx_doc()).expect(predicate_type);
        assert_eq!(
            names(&packages),
            ["registry.example.com/app", "log4j-core", "nested", "deeper", "event-stream", "7"],
            "{predicate_type}"
        );
        let list = packages.as_array().expect("list");
        assert_eq!(
            list[1],
            json!({"name": "log4j-core", "version": "2.14.1", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                   "licenses": ["Apache-2.0"], "type": "library"})
        );
        assert_eq!(list[2]["licenses"], json!(["MIT", "AGPL-3.0-only", "Apache-2.0"]));
        assert_eq!(list[2]["type"], "library", "types are lowercase");
        assert_eq!(list[3]["licenses"], json!(["Custom License v1"]), "a license name is kept whole");
        assert_eq!(list[3]["version"], "", "missing fields are empty strings");
        assert_eq!(list[4]["licenses"], json!(["MIT"]), "duplicates and NOASSERTION are dropped");
        assert_eq!(list[5]["version"], "2", "numbers are read as text");
    }
    let sbom = variable(CDX, &cyclonedx_doc()).expect("parses");
    assert_eq!(sbom["format"], "cyclonedx");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["packages"].as_array().map(Vec::len), Some(6));
    assert_eq!(format(CDX, &cyclonedx_doc()), Some(SbomFormat::CycloneDx));
}

fn spdx2_doc() -> Value {
    json!({
        "spdxVersion": "SPDX-2.3",
        "SPDXID": "SPDXRef-DOCUMENT",
        "packages": [
            {"name": "log4j-core", "versionInfo": "2.14.1", "primaryPackagePurpose": "LIBRARY",
             "licenseConcluded": "NOASSERTION", "licenseDeclared": "Apache-2.0",
             "externalRefs": [
                {"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:a:apache:log4j:2.14.1:*:*:*:*:*:*:*"},
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"}
             ]},
            {"name": "mixed", "licenseConcluded": "(MIT OR Apache-2.0) AND LGPL-2.1-only WITH Classpath-exception-2.0",
             "licenseDeclared": "NONE"},
            {"SPDXID": "SPDXRef-nameless"}
        ]
    })
}

#[test]
fn spdx2_packages() {
    for predicate_type in [SPDX, "https://spdx.dev/Document/v2.3"] {
        let packages = packages(predicate_type, &spdx2_doc()).expect(predicate_type);
        let list = packages.as_array().expect("list");
        assert_eq!(list.len(), 3);
        assert_eq!(
            list[0],
            json!({"name": "log4j-core", "version": "2.14.1", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                   "licenses": ["Apache-2.0"], "type": "library"})
        );
        assert_eq!(list[1]["licenses"], json!(["MIT", "Apache-2.0", "LGPL-2.1-only", "Classpath-exception-2.0"]));
        assert_eq!(list[2], json!({"name": "", "version": "", "purl": "", "licenses": [], "type": ""}));
    }
    let sbom = variable(SPDX, &spdx2_doc()).expect("parses");
    assert_eq!((sbom["format"].as_str(), sbom["specVersion"].as_str()), (Some("spdx"), Some("2.3")));
}

#[test]
fn spdx3_packages_through_relationships() {
    let doc = json!({
        "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
        "@graph": [
            {"@id": "_:ci", "type": "CreationInfo", "specVersion": "3.0.1"},
            {"spdxId": "urn:pkg1", "type": "software_Package", "name": "openssl", "software_packageVersion": "3.0.7",
             "software_primaryPurpose": "library",
             "externalIdentifier": [{"type": "ExternalIdentifier", "externalIdentifierType": "packageUrl", "identifier": "pkg:deb/debian/openssl@3.0.7"}]},
            {"spdxId": "urn:pkg2", "type": "software_Package", "name": "db", "software_packageUrl": "pkg:generic/db@1"},
            {"spdxId": "urn:lic1", "type": "simplelicensing_LicenseExpression", "simplelicensing_licenseExpression": "Apache-2.0 OR SSPL-1.0"},
            {"spdxId": "https://spdx.org/licenses/MIT", "type": "expandedlicensing_ListedLicense"},
            {"spdxId": "urn:lic3", "type": "simplelicensing_LicenseExpression", "simplelicensing_licenseExpression": "NOASSERTION"},
            {"spdxId": "urn:r1", "type": "Relationship", "relationshipType": "hasConcludedLicense", "from": "urn:pkg1", "to": ["urn:lic1"]},
            {"spdxId": "urn:r2", "type": "Relationship", "relationshipType": "hasDeclaredLicense", "from": "urn:pkg1", "to": ["https://spdx.org/licenses/MIT", "urn:missing"]},
            {"spdxId": "urn:r3", "type": "Relationship", "relationshipType": "hasDeclaredLicense", "from": "urn:pkg2", "to": "urn:lic3"},
            {"spdxId": "urn:r4", "type": "Relationship", "relationshipType": "dependsOn", "from": "urn:pkg2", "to": ["urn:lic1"]}
        ]
    });
    let sbom = parse("https://spdx.dev/Document/v3.0", &doc).expect("parses").expect("an SBOM");
    assert_eq!(sbom.format, SbomFormat::Spdx);
    assert_eq!(sbom.spec_version, "3.0.1");
    assert_eq!(
        sbom.packages,
        [
            Package {
                name: "openssl".into(),
                version: "3.0.7".into(),
                purl: "pkg:deb/debian/openssl@3.0.7".into(),
                licenses: vec!["Apache-2.0".into(), "SSPL-1.0".into(), "MIT".into()],
                kind: "library".into(),
            },
            Package { name: "db".into(), purl: "pkg:generic/db@1".into(), ..Package::default() },
        ]
    );
}

#[test]
fn other_predicates_and_disagreeing_markers_are_not_sboms() {
    let cdx = cyclonedx_doc();
    let spdx = spdx2_doc();
    for (predicate_type, predicate) in [
        ("https://slsa.dev/provenance/v1", &cdx),
        ("https://cosign.sigstore.dev/attestation/v1", &spdx),
        ("https://cyclonedx.org/bomb", &cdx),
        ("https://cyclonedx.org/bom", &spdx),
        ("https://spdx.dev/Document", &cdx),
        ("https://cyclonedx.org/bom", &json!({"components": [{"name": "no bomFormat"}]})),
        ("https://cyclonedx.org/bom", &json!({"bomFormat": "SPDX", "components": []})),
        ("https://spdx.dev/Document", &json!({"spdxVersion": "SPDX-1.2", "packages": []})),
        ("https://spdx.dev/Document", &json!({"spdxVersion": 2.3, "packages": []})),
        ("https://spdx.dev/Document", &json!({"@graph": [{"type": "Person"}]})),
        ("https://spdx.dev/Document", &json!({"packages": []})),
        ("https://cyclonedx.org/bom", &json!(null)),
        ("https://cyclonedx.org/bom", &json!("CycloneDX")),
        ("https://spdx.dev/Document", &json!([spdx.clone()])),
    ] {
        assert_eq!(packages(predicate_type, predicate), None, "{predicate_type}: {predicate}");
        assert_eq!(variable(predicate_type, predicate), Ok(Value::Null));
        assert_eq!(format(predicate_type, predicate), None);
    }
}

#[test]
fn odd_shapes_never_panic() {
    let odd = [
        json!({"bomFormat": "CycloneDX", "components": "nope", "metadata": "nope"}),
        json!({"bomFormat": "CycloneDX", "components": [{"licenses": "x"}, {"licenses": [1, {"license": 2}, {"expression": 3}]}]}),
        json!({"bomFormat": "CycloneDX", "components": [{"components": {"name": "map"}}, null, []]}),
        json!({"spdxVersion": "SPDX-2.2", "packages": [1, null, {"externalRefs": "x", "licenseConcluded": ["MIT"]}]}),
        json!({"spdxVersion": "SPDX-2.2", "packages": {"name": "map"}}),
        json!({"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": [1, "x", {"type": 5}, {"type": "software_Package", "externalIdentifier": [1]}, {"relationshipType": "hasDeclaredLicense", "from": 1, "to": {}}]}),
    ];
    for doc in odd {
        for predicate_type in [CDX, SPDX] {
            let _ = parse(predicate_type, &doc);
        }
    }
    let ok = packages(CDX, &json!({"bomFormat": "CycloneDX", "specVersion": "1.4"})).expect("empty BOM");
    assert_eq!(ok, json!([]), "a BOM without components lists no packages");
}

#[test]
fn limits_are_errors_not_truncation() {
    let mut nested = json!({"name": "leaf"});
    for level in 0..MAX_DEPTH {
        nested = json!({"name": format!("level-{level}"), "components": [nested]});
    }
    let too_deep = json!({"bomFormat": "CycloneDX", "components": [nested]});
    assert_eq!(parse(CDX, &too_deep), Err(SbomError::TooDeep { limit: MAX_DEPTH }));
    assert_eq!(packages(CDX, &too_deep), None);
    let just_deep_enough = json!({"bomFormat": "CycloneDX", "components": too_deep["components"][0]["components"]});
    assert_eq!(packages(CDX, &just_deep_enough).and_then(|p| p.as_array().map(Vec::len)), Some(MAX_DEPTH));

    let many: Vec<Value> = (0..=MAX_PACKAGES).map(|i| json!({"name": i.to_string()})).collect();
    let too_many = json!({"spdxVersion": "SPDX-2.3", "packages": many});
    assert_eq!(variable(SPDX, &too_many), Err(SbomError::TooManyPackages { limit: MAX_PACKAGES }));
    let at_limit = json!({"spdxVersion": "SPDX-2.3", "packages": &too_many["packages"].as_array().expect("list")[1..]});
    assert_eq!(parse(SPDX, &at_limit).map(|s| s.map(|s| s.packages.len())), Ok(Some(MAX_PACKAGES)));
}

/// A fixture document (tests reading one are ignored when the shared fixtures are absent).
pub(crate) fn fixture(relative: &str) -> Value {
    let path = format!("{FIXTURES}/{relative}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn real_cyclonedx_documents() {
    // (file, spec version, packages incl. metadata.component, a package that must be found)
    let cases = [
        ("cyclonedx/SBOM_cern-lhc-vdm-editor-e564943_bom.json", "1.2", 44, ("debug", "4.1.1", "MIT")),
        ("cyclonedx/SBOM_dropwizard-1.3.15_bom.json", "1.2", 168, ("jackson-databind", "2.9.10", "Apache-2.0")),
        ("cyclonedx/SBOM_laravel-7.12.0_bom.1.4.json", "1.4", 63, ("stack-cors", "1.3.0", "MIT")),
        (
            "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
            "1.2",
            202,
            ("github.com/AndreasBriese/bbloom", "v0.0.0-20190306092124-e2d15f34fcf9", "CC0-1.0"),
        ),
        ("cyclonedx/SaaSBOM_apigateway-microservices-datastores_bom.json", "1.4", 1, ("", "", "")),
        ("cyclonedx/VEX_CISA-Use-Cases_Case-2_vex.json", "1.4", 1, ("", "", "")),
    ];
    for (file, spec, count, (name, version, license)) in cases {
        let doc = fixture(file);
        let sbom = parse("https://cyclonedx.org/bom", &doc).expect(file).expect(file);
        assert_eq!(
            (sbom.format, sbom.spec_version.as_str(), sbom.packages.len()),
            (SbomFormat::CycloneDx, spec, count),
            "{file}"
        );
        if !name.is_empty() {
            let found = sbom.packages.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{file}: {name}"));
            assert_eq!(found.version, version, "{file}");
            assert!(found.licenses.iter().any(|l| l == license), "{file}: {found:?}");
            assert!(found.purl.starts_with("pkg:"), "{file}: {found:?}");
        }
    }
    // An expression in a real document is split into its identifiers.
    let doc = fixture("cyclonedx/SBOM_dropwizard-1.3.15_bom.json");
    let sbom = parse(CDX, &doc).expect("parses").expect("an SBOM");
    assert!(sbom.packages.iter().any(|p| p.licenses == ["CDDL-1.0", "GPL-2.0-with-classpath-exception"]));
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn real_spdx_documents() {
    let cases = [
        ("spdx/presentations_OSS-NA-2023_SPDXVersion2.3_01-MinimalSBOM.json", "2.3", 1),
        ("spdx/presentations_OSS-NA-2023_SPDXVersion2.3_04-SBOMwSecurity.json", "2.3", 2),
        ("spdx/presentations_SBOMS-SPDX-Now-and-Future_ACME-v2.3.spdx.json", "2.3", 4),
        ("spdx/software_example10_spdx2.3_hello-source.spdx.json", "2.3", 1),
        ("spdx/software_example11_spdx2.3_sbom.spdx.json", "2.3", 4),
        ("spdx/software_example14_spdx2.3_examplemaven-0.0.1-enriched.spdx.json", "2.3", 6),
        ("spdx/software_example7_spdx2.2_example7-bin.spdx.json", "2.2", 1),
        ("spdx/software_example11_spdx3.0_sbom.spdx3.json", "3.0.1", 4),
    ];
    for (file, spec, count) in cases {
        let doc = fixture(file);
        let sbom = parse("https://spdx.dev/Document", &doc).expect(file).expect(file);
        assert_eq!(
            (sbom.format, sbom.spec_version.as_str(), sbom.packages.len()),
            (SbomFormat::Spdx, spec, count),
            "{file}"
        );
    }
    let find = |file: &str, name: &str| -> Package {
        let doc = fixture(file);
        let sbom = parse(SPDX, &doc).expect(file).expect(file);
        sbom.packages.into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{file}: {name}"))
    };
    let elliptic = find("spdx/presentations_SBOMS-SPDX-Now-and-Future_ACME-v2.3.spdx.json", "elliptic");
    assert_eq!((elliptic.version.as_str(), elliptic.purl.as_str()), ("6.5.2", "pkg:npm/elliptic@6.5.2"));
    assert_eq!(elliptic.licenses, ["MIT"]);
    let acme = find("spdx/presentations_SBOMS-SPDX-Now-and-Future_ACME-v2.3.spdx.json", "Acme Applcation");
    assert_eq!(acme.kind, "application");
    let hello = find("spdx/software_example10_spdx2.3_hello-source.spdx.json", "hello");
    assert_eq!(hello.licenses, vec!["MIT".to_owned()], "NOASSERTION concluded, MIT declared");
    // SPDX 3: licenses reached through relationships, NOASSERTION/NONE dropped.
    let spdx3 = "spdx/software_example11_spdx3.0_sbom.spdx3.json";
    let logger = find(spdx3, "pretty_env_logger");
    assert_eq!(logger.licenses, ["MIT", "Apache-2.0"]);
    assert_eq!(logger.purl, "pkg:cargo/pretty_env_logger@0.4.0");
    let hyper = find(spdx3, "hyper");
    assert_eq!((hyper.version.as_str(), hyper.licenses.as_slice()), ("0.14", ["MIT".to_owned()].as_slice()));
    // The same packages as the SPDX 2.3 rendering of the same SBOM.
    let names = |file: &str| -> Vec<(String, String, String)> {
        let doc = fixture(file);
        let mut list: Vec<_> = parse(SPDX, &doc)
            .expect(file)
            .expect(file)
            .packages
            .into_iter()
            .map(|p| (p.name, p.version, p.purl))
            .collect();
        list.sort();
        list
    };
    assert_eq!(names(spdx3), names("spdx/software_example11_spdx2.3_sbom.spdx.json"));
}
