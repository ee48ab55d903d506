use super::*;

const HEAD: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\n";

fn run(text: &str) -> Vec<Lint> {
    lint(&parse_docs(text, "p.yaml").expect("parse"), &[], &CelEnv::new(), &[])
}

fn rules(text: &str) -> Vec<&'static str> {
    run(text).into_iter().map(|l| l.rule).collect()
}

fn keyless(name: &str, identity: &str) -> String {
    format!(
        "{HEAD}metadata: {{name: {name}}}\nspec:\n  images: ['ghcr.io/acme/**']\n  authorities:\n    - name: ci\n      \
         keyless:\n        issuer: https://token.actions.githubusercontent.com\n        {identity}\n"
    )
}

#[test]
fn identity_too_broad_finds_an_open_org_name() {
    for identity in [
        "subjectRegExp: https://github.com/acme.*",
        "subjectRegExp: 'https://github\\.com/acme[^/]*/app/.*'",
        "subjectRegExp: https://github.com/acme/app.*",
        "subjectRegExp: https://github.com/.*",
        "subjectPattern: https://github.com/acme*/**",
        // Ways around a naive prefix reading: groups, flags, one-character classes.
        "subjectRegExp: '(?:https://github.com/acme).*'",
        "subjectRegExp: '(?i)https://github.com/acme.*'",
        "subjectRegExp: 'https://github[.]com/acme.*'",
        "subjectRegExp: 'https://github.com/(acme|acme-labs).*'",
    ] {
        let found = run(&keyless("p", identity));
        assert!(found.iter().any(|l| l.rule == "identity-too-broad"), "{identity}: {found:?}");
        assert!(found.iter().all(|l| l.severity == Severity::Error), "{found:?}");
    }
    let issuer = keyless("p", "subject: x").replace("issuer: https", "issuerRegExp: https");
    let issuer = issuer.replace("githubusercontent.com\n", "githubusercontent.com.*\n");
    assert_eq!(rules(&issuer), ["identity-too-broad"], "{issuer}");
}

#[test]
fn identity_with_a_slash_boundary_is_quiet() {
    for identity in [
        "subjectRegExp: https://github.com/acme/.*",
        "subjectRegExp: 'https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*'",
        "subjectRegExp: https://github.com/acme/app(-v2)?/.*",
        "subjectPattern: https://github.com/acme/**",
        "subject: https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main",
        "subjectRegExp: '.*@acme\\.com'",
        "subjectRegExp: '(?:https://github.com/acme/).*'",
        "subjectRegExp: 'https://github.com/acme/(app|lib)/.*'",
        "subjectRegExp: '(https://github.com/acme/app/.*)?x'",
    ] {
        assert_eq!(rules(&keyless("p", identity)), Vec::<&str>::new(), "{identity}");
    }
}

#[test]
fn github_ref_any() {
    let any = keyless("p", "github: {repository: acme/app, ref: '**'}");
    assert_eq!(rules(&any), ["github-ref-any"]);
    let tags = keyless("p", "github: {repository: acme/app, ref: 'refs/tags/v*'}");
    assert_eq!(rules(&tags), Vec::<&str>::new());
    // `refs/**` is every ref too.
    assert_eq!(rules(&keyless("p", "github: {repository: acme/app, ref: 'refs/**'}")), ["github-ref-any"]);
}

#[test]
fn globs_never_matching_or_shadowed() {
    let dead = format!(
        "{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/acme/app']\n  excludeImages: ['ghcr.io/**']\n"
    );
    assert_eq!(rules(&dead), ["glob-never-matches"]);
    let allowed = format!(
        "{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/acme/**']\n  digest: allow-tags\n  allowedImages: ['docker.io/**']\n"
    );
    assert_eq!(rules(&allowed), ["glob-never-matches"]);
    let shadow = format!("{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/**', 'ghcr.io/acme/*']\n");
    let found = run(&shadow);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "glob-shadowed");
    assert!(found[0].message.contains("ghcr.io/acme/*"), "{}", found[0]);
    let no_effect =
        format!("{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/acme/**']\n  excludeImages: ['quay.io/**']\n");
    assert_eq!(rules(&no_effect), ["glob-shadowed"]);
    let ns = format!(
        "{HEAD}metadata: {{name: p}}\nspec:\n  match: {{namespaces: ['team-a'], excludeNamespaces: ['team-*']}}\n  images: ['**']\n"
    );
    assert_eq!(rules(&ns), ["glob-never-matches"]);
    // A partial exclusion is what excludeImages is for.
    let partial = format!(
        "{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/**']\n  excludeImages: ['ghcr.io/legacy/**']\n"
    );
    assert_eq!(rules(&partial), Vec::<&str>::new());
}

#[test]
fn conflicting_modes_on_the_same_check() {
    let two = |ns_a: &str, ns_b: &str, digest_b: &str| {
        format!(
            "{HEAD}metadata: {{name: strict}}\nspec:\n  match: {{namespaces: [{ns_a}]}}\n  images: ['**']\n---\n{HEAD}\
             metadata: {{name: lenient}}\nspec:\n  mode: warn\n  match: {{namespaces: [{ns_b}]}}\n  images: ['ghcr.io/**']\n  digest: {digest_b}\n"
        )
    };
    let found = run(&two("'team-*'", "team-a", "require"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].rule, found[0].policy.as_str()), ("conflicting-modes", "lenient"));
    assert!(found[0].message.contains("\"strict\""), "{}", found[0]);
    // Disjoint namespaces, or different checks: no conflict.
    assert_eq!(rules(&two("prod", "staging", "require")), Vec::<&str>::new());
    // The strict policy covers only part of the lenient one: the lenient mode still decides elsewhere.
    assert_eq!(rules(&two("team-a", "'team-*'", "require")), Vec::<&str>::new());
    assert_eq!(rules(&two("'team-*'", "team-a", "allow-tags")), Vec::<&str>::new());
}

#[test]
fn unknown_predicate_and_tlog_skip() {
    let text = format!(
        "{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/**']\n  authorities:\n    - name: k\n      \
         key: {{publicKey: x}}\n      transparencyLog: skip\n  attestations:\n    - name: a\n      predicateType: \
         https://slsa.dev/provenance/v02\n"
    );
    assert_eq!(rules(&text), ["tlog-skip-enforce", "unknown-predicate"]);
    let fine = text.replace("provenance/v02", "provenance/v1").replace("\n  images", "\n  mode: audit\n  images");
    assert_eq!(rules(&fine), Vec::<&str>::new());
}

#[test]
fn tlog_timestamp_without_a_named_root() {
    let text = |root: &str| {
        format!(
            "{HEAD}metadata: {{name: p}}\nspec:\n  images: ['ghcr.io/**']\n  authorities:\n    - name: gh\n      \
             keyless: {{issuer: https://token.actions.githubusercontent.com, subject: s}}\n      \
             transparencyLog: timestamp\n{root}"
        )
    };
    let found = run(&text(""));
    assert_eq!(found.iter().map(|l| l.rule).collect::<Vec<_>>(), ["tlog-timestamp-public-good"], "{found:?}");
    assert!(found[0].message.contains("trustedRoot: github"), "{}", found[0]);
    // GitHub's instance (or a private one) has no log: a timestamp is what it gives.
    assert_eq!(rules(&text("      trustedRoot: github\n")), Vec::<&str>::new());
    // `timestamp` is not `skip`: no tlog-skip-enforce.
    assert!(!rules(&text("")).contains(&"tlog-skip-enforce"));
}

#[test]
fn cel_that_always_errors() {
    let policy = |expr: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {{name: r}}\nspec:\n  match: {{kinds: \
             [Deployment]}}\n  rules:\n    - expression: \"{expr}\"\n"
        )
    };
    let found = run(&policy("object.spec.templat.spec.containers.size() > 0"));
    assert_eq!(found.iter().map(|l| l.rule).collect::<Vec<_>>(), ["cel-always-errors"], "{found:?}");
    assert!(found[0].message.contains("denies"), "{}", found[0]);
    assert_eq!(rules(&policy("object.spec.template.spec.containers.size() > 0")), Vec::<&str>::new());
    // An error on some objects only (a field most kinds lack) is not reported.
    let any_kind = policy("object.data.size() > 0").replace("match: {kinds: [Deployment]}", "match: {}");
    assert_eq!(rules(&any_kind), Vec::<&str>::new());
}

#[test]
fn silenced_by_annotation_or_flag() {
    let text = keyless("p", "subjectRegExp: https://github.com/acme.*");
    let docs = parse_docs(&text, "p.yaml").expect("parse");
    let env = CelEnv::new();
    assert_eq!(lint(&docs, &["identity-too-broad".to_owned()], &env, &[]), []);
    assert_eq!(lint(&docs, &["identity-too-broad:p".to_owned()], &env, &[]), []);
    // Another policy's name, or another rule, silences nothing.
    assert_eq!(lint(&docs, &["identity-too-broad:q".to_owned()], &env, &[]).len(), 1);
    assert_eq!(lint(&docs, &["github-ref-any".to_owned()], &env, &[]).len(), 1);
    let annotated = text.replace(
        "metadata: {name: p}",
        "metadata: {name: p, annotations: {portcullis.dev/lint-ignore: 'x, identity-too-broad'}}",
    );
    assert_eq!(rules(&annotated), Vec::<&str>::new());
}

#[test]
fn every_rule_has_a_severity_and_other_kinds_are_skipped() {
    for (id, ..) in RULES {
        assert!(severity(id) == Severity::Error || severity(id) == Severity::Warning);
    }
    let docs = parse_docs("apiVersion: portcullis.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: t}\n", "t.yaml");
    assert!(docs.expect("parse").is_empty());
}

#[test]
fn cel_on_custom_resources_uses_the_test_cases_objects() {
    let policy = "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {name: r}\nspec:\n  match: \
                  {kinds: [Certificate]}\n  rules:\n    - expression: \"object.spec.secretName != ''\"\n";
    let docs = parse_docs(policy, "p.yaml").expect("parse");
    let env = CelEnv::new();
    // No example of the kind: nothing to say.
    assert_eq!(lint(&docs, &[], &env, &[]), []);
    let case = |spec: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PolicyTest\nmetadata: {{name: t}}\nspec:\n  object:\n    \
             apiVersion: cert-manager.io/v1\n    kind: Certificate\n    metadata: {{name: c}}\n    spec: {spec}\n  \
             expect: {{decision: allowed}}\n"
        )
    };
    let objects = test_objects(&case("{commonName: x}"));
    assert_eq!(objects.len(), 1);
    let found = lint(&docs, &[], &env, &objects);
    assert_eq!(found.iter().map(|l| l.rule).collect::<Vec<_>>(), ["cel-always-errors"], "{found:?}");
    let objects = test_objects(&case("{secretName: tls}"));
    assert_eq!(lint(&docs, &[], &env, &objects), []);
}

#[test]
fn claims_naming_no_project_are_too_broad() {
    let broad = keyless("p", "claims: {runnerEnvironment: gitlab-hosted}");
    assert_eq!(rules(&broad), ["claims-too-broad"]);
    let by_ref = keyless("p", "claims: {sourceRepositoryRef: refs/heads/main, buildTrigger: push}");
    assert_eq!(rules(&by_ref), ["claims-too-broad"]);
    let named =
        keyless("p", "claims: {runnerEnvironment: gitlab-hosted, sourceRepositoryURI: 'https://gitlab.com/acme/app'}");
    assert!(rules(&named).is_empty(), "{:?}", rules(&named));
    let with_subject = keyless(
        "p",
        "subject: https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main\n        claims: {runnerEnvironment: gitlab-hosted}",
    );
    assert!(rules(&with_subject).is_empty(), "{:?}", rules(&with_subject));
}
