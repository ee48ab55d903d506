use super::*;

const HEX: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn n(s: &str) -> String {
    ImageRef::parse(s).expect(s).to_string()
}

/// References as users write them → the canonical name, or refused. Includes the forms the
/// runtime's grammar (distribution/reference) accepts and the spellings of one registry that
/// must not escape a policy.
#[test]
fn the_canonicaliser_table() {
    let d = format!("sha256:{HEX}");
    let rows: Vec<(String, Option<String>)> = vec![
        // Docker Hub, as the runtime expands it.
        ("nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("nginx:1.27".into(), Some("docker.io/library/nginx:1.27".into())),
        ("docker.io/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("index.docker.io/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("registry-1.docker.io/library/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("registry.hub.docker.com/library/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("DOCKER.IO/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("docker.io:443/nginx".into(), Some("docker.io/library/nginx:latest".into())),
        ("bitnami/redis".into(), Some("docker.io/bitnami/redis:latest".into())),
        // Host spelling: case, default port.
        ("GHCR.IO/acme/app:v1".into(), Some("ghcr.io/acme/app:v1".into())),
        ("Ghcr.io/acme/app".into(), Some("ghcr.io/acme/app:latest".into())),
        ("ghcr.io:443/acme/app".into(), Some("ghcr.io/acme/app:latest".into())),
        ("LOCALHOST:5000/app".into(), Some("localhost:5000/app:latest".into())),
        ("LOCALHOST/app".into(), Some("localhost/app:latest".into())),
        // A single-label host loses its host-ness when written canonically (found by fuzzing).
        ("Registry/app".into(), None),
        ("LOCFo0050/o".into(), None),
        ("reg:443/app".into(), None),
        ("REG:5000/app".into(), Some("reg:5000/app:latest".into())),
        ("localhost:5000/app:v1".into(), Some("localhost:5000/app:v1".into())),
        ("ghcr.io:8443/acme/app".into(), Some("ghcr.io:8443/acme/app:latest".into())),
        ("ghcr.io:80/acme/app".into(), Some("ghcr.io:80/acme/app:latest".into())),
        ("127.0.0.1:5000/a/b".into(), Some("127.0.0.1:5000/a/b:latest".into())),
        ("[::1]:5000/app:v1".into(), Some("[::1]:5000/app:v1".into())),
        ("[0:0::1]:5000/app".into(), Some("[::1]:5000/app:latest".into())),
        ("[2001:DB8::1]/app".into(), Some("[2001:db8::1]/app:latest".into())),
        ("[2001:db8::1]:443/app".into(), Some("[2001:db8::1]/app:latest".into())),
        ("xn--bcher-kva.example/app".into(), Some("xn--bcher-kva.example/app:latest".into())),
        // distribution/reference grammar cases.
        ("test_com".into(), Some("docker.io/library/test_com:latest".into())),
        ("test.com:tag".into(), Some("docker.io/library/test.com:tag".into())),
        ("test.com:5000".into(), Some("docker.io/library/test.com:5000".into())),
        ("test.com/repo:tag".into(), Some("test.com/repo:tag".into())),
        ("test:5000/repo".into(), Some("test:5000/repo:latest".into())),
        (format!("test:5000/repo@{d}"), Some(format!("test:5000/repo@{d}"))),
        (format!("test:5000/repo:tag@{d}"), Some(format!("test:5000/repo:tag@{d}"))),
        ("lowercase:Uppercase".into(), Some("docker.io/library/lowercase:Uppercase".into())),
        ("sub-dom1.foo.com/bar/baz/quux".into(), Some("sub-dom1.foo.com/bar/baz/quux:latest".into())),
        ("foo_bar.com:8080".into(), Some("docker.io/library/foo_bar.com:8080".into())),
        ("a__b/c.d/e--f_g".into(), Some("docker.io/a__b/c.d/e--f_g:latest".into())),
        // Refused: the runtime's grammar refuses them.
        ("".into(), None),
        ("Uppercase:tag".into(), None),
        ("ghcr.io/Acme/app".into(), None),
        ("nginx:".into(), None),
        ("nginx:-x".into(), None),
        ("ghcr.io/acme/app@sha256:abc".into(), None),
        (format!("ghcr.io/acme/app@md5:{HEX}"), None),
        ("ghcr.io//app".into(), None),
        ("ghcr.io/acme/-app".into(), None),
        ("ghcr.io/acme/app_".into(), None),
        ("a___b".into(), None),
        ("bad_host.io:port/app".into(), None),
        ("ghcr.io:/app".into(), None),
        ("app name".into(), None),
        ("[fe80::1%eth0]:5000/repo".into(), None),
        // Refused: the runtime would reach them under another spelling we cannot canonicalise.
        ("ghcr.io./acme/app".into(), None),
        ("localhost.:5000/app".into(), None),
        ("127.1:5000/app".into(), None),
        ("0x7f.0.0.1:5000/app".into(), None),
        ("2130706433:5000/app".into(), None),
        ("0177.0.0.1:5000/app".into(), None),
        ("127.000.0.1:5000/app".into(), None),
        ("256.0.0.1:5000/app".into(), None),
        ("registry.123/app".into(), None),
        ("ghcr.io:0443/acme/app".into(), None),
        ("ghcr.io:65536/acme/app".into(), None),
        ("ghcr.io:0/acme/app".into(), None),
        ("bücher.example/app".into(), None),
        ("gh\u{0441}r.io/acme/app".into(), None),
    ];
    for (input, want) in rows {
        let got = ImageRef::parse(&input).map(|r| r.to_string());
        match want {
            Some(want) => assert_eq!(got.as_deref(), Ok(want.as_str()), "{input:?}"),
            None => assert!(got.is_err(), "{input:?} should be refused, got {got:?}"),
        }
    }
    assert_eq!(ImageRef::parse(&"a".repeat(300)), Err(ImageRefError::TooLong));
    // 250 characters as written, 260 once `docker.io/` is added: too long (found by fuzzing).
    let short_but_long = format!("a/{}", "b".repeat(248));
    assert_eq!(ImageRef::parse(&short_but_long), Err(ImageRefError::TooLong));
    let fits = format!("a/{}", "b".repeat(243));
    assert_eq!(ImageRef::parse(&fits).map(|r| r.name().len()), Ok(255));
}

#[test]
fn refusals_say_why() {
    let err = |s: &str| ImageRef::parse(s).expect_err(s).to_string();
    assert!(err("127.1:5000/app").contains("four decimal octets"), "{}", err("127.1:5000/app"));
    assert!(err("bücher.example/app").contains("punycode"));
    assert!(err("ghcr.io./app").contains("trailing dot"));
}

#[test]
fn pinned_references_keep_their_digest() {
    let pinned = format!("ghcr.io/acme/app@sha256:{HEX}");
    let r = ImageRef::parse(&pinned).expect("parses");
    assert_eq!(r.tag(), None);
    assert_eq!(r.digest().map(|d| d.hex()), Some(HEX));
    assert_eq!(r.to_string(), pinned);
    assert_eq!(r.registry(), "ghcr.io");
    assert_eq!(r.repository(), "acme/app");
}

#[test]
fn name_and_with_digest() {
    let r = ImageRef::parse("nginx:1").expect("parses");
    assert_eq!(r.name(), "docker.io/library/nginx");
    let d = Digest::parse(&format!("sha256:{HEX}")).expect("digest");
    assert_eq!(r.with_digest(d).to_string(), format!("docker.io/library/nginx:1@sha256:{HEX}"));
    assert_eq!(n("Ghcr.IO:443/a/b:v"), "ghcr.io/a/b:v");
}

/// Globs → canonical glob, or refused with the fix.
#[test]
fn globs_go_through_the_same_canonicaliser() {
    let ok = [
        ("nginx", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/nginx", "docker.io/library/nginx"),
        ("docker.io/*", "docker.io/library/*"),
        ("docker.io/**", "docker.io/**"),
        ("acme/*", "docker.io/acme/*"),
        ("index.docker.io/acme/**", "docker.io/acme/**"),
        ("GHCR.IO/acme/**", "ghcr.io/acme/**"),
        ("ghcr.io:443/acme/**", "ghcr.io/acme/**"),
        ("LOCALHOST:5000/**", "localhost:5000/**"),
        ("[0::1]:5000/**", "[::1]:5000/**"),
        ("*.Example.com:443/**", "*.example.com/**"),
        ("**", "**"),
        ("ghcr.io/acme/app-?", "ghcr.io/acme/app-?"),
    ];
    for (glob, want) in ok {
        assert_eq!(canonical_glob(glob).as_deref(), Ok(want), "{glob}");
    }
    let refused = [
        ("", "empty"),
        ("ghcr.io/acme/app:*", "use ghcr.io/acme/app — images are matched without tag or digest"),
        ("ghcr.io/acme/app:v1", "use ghcr.io/acme/app — images"),
        ("nginx:latest", "use docker.io/library/nginx — images"),
        ("localhost:5000/app:v1", "use localhost:5000/app — images"),
        (&format!("ghcr.io/acme/app@sha256:{HEX}"), "tag or digest"),
        ("ghcr.io/Acme/**", "use ghcr.io/acme/**"),
        ("ghcr.io/acme//app", "empty path component"),
        ("ghcr.io/acme/", "empty path component"),
        ("127.1:5000/**", "four decimal octets"),
        ("ghcr.io./**", "trailing dot"),
    ];
    for (glob, message) in refused {
        let err = canonical_glob(glob).expect_err(glob).to_string();
        assert!(err.contains(message), "{glob}: {err}");
    }
}
