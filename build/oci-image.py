#!/usr/bin/env python3
"""Build the portcullis container image without a container engine.

Assembles an OCI image layout from a portcullis binary and the runtime files it needs, taken
from Debian packages (`apt-get download`): the C library and loader (libc6), libgcc_s
(libgcc-s1) and the Mozilla CA bundle (ca-certificates), plus passwd/group entries for the
non-root user 65532. The same inputs give the same image digest: files are sorted, owned by
root (the home directory by 65532), timestamped SOURCE_DATE_EPOCH, gzip without a name or
time. Optionally pushes the image to a registry (OCI distribution API, anonymous, Basic or
token auth) and prints `REPOSITORY@sha256:...` to pin by digest.

    build/oci-image.py --binary target/release/portcullis --out dist/oci \\
        --push ghcr.io/acme/portcullis:0.1.0

Python 3.9+, standard library only. The host must be the Debian release the binary was built
on (its glibc is the one the binary needs).
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

PACKAGES = ("libc6", "libgcc-s1", "ca-certificates")
BINARY_PATH = "usr/local/bin/portcullis"
UID = GID = 65532
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
# Parts of the packages a static-ish Rust binary never reads (copyright files are kept).
SKIP = re.compile(r"^(usr/share/(man|info|lintian|locale|doc/[^/]+/(?!copyright$)[^/]+)|usr/sbin|usr/bin|sbin|"
                  r"usr/lib/x86_64-linux-gnu/gconv|usr/libexec|usr/share/ca-certificates|etc/ca-certificates)")
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class BuildError(Exception):
    pass


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(cmd, cwd=None):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


# --- Debian packages -------------------------------------------------------------------------

def download_debs(cache):
    """The packages' .deb files, downloaded into cache (kept between builds). libc6 and
    libgcc-s1 at the versions installed here, which the binary was linked against, or the
    archive's current ones when those are gone (glibc is backward compatible)."""
    os.makedirs(cache, exist_ok=True)
    debs = {}
    for package in PACKAGES:
        installed = None
        if package != "ca-certificates":
            installed = run(["dpkg-query", "-W", "-f=${Version}", package]).strip()
        found = find_deb(cache, package, installed)
        if not found:
            attempts = [f"{package}={installed}", package] if installed else [package]
            errors = []
            for spec in attempts:
                try:
                    run(["apt-get", "download", spec], cwd=cache)
                    break
                except BuildError as e:
                    errors.append(str(e))
            else:
                raise BuildError("; ".join(errors) + "\n(run `apt-get update` first if the package lists are missing)")
            found = find_deb(cache, package, installed) or find_deb(cache, package, None)
        if not found:
            raise BuildError(f"apt-get download {package} left no .deb in {cache}")
        debs[package] = found
    return debs


def find_deb(cache, package, version):
    prefix = f"{package}_{version.replace(':', '%3a')}_" if version else f"{package}_"
    names = sorted(f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".deb"))
    return os.path.join(cache, names[-1]) if names else None


def deb_data(path):
    """The data.tar member of a .deb (an ar archive), as an open tarfile."""
    with open(path, "rb") as f:
        blob = f.read()
    if not blob.startswith(b"!<arch>\n"):
        raise BuildError(f"{path} is not a Debian package")
    offset = 8
    while offset + 60 <= len(blob):
        header = blob[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        offset += 60 + size + (size % 2)
    raise BuildError(f"{path} has no data.tar")


def package_version(path):
    return os.path.basename(path).split("_")[1].replace("%3a", ":")


# --- Layers --------------------------------------------------------------------------------------

class Layer:
    """A reproducible tar: entries sorted by path, fixed owner and time."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.entries = {}

    def add_dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries.setdefault(path, ("dir", None, mode, uid, gid))

    def add_file(self, path, data, mode=0o644, uid=0, gid=0):
        self._parents(path)
        self.entries[path] = ("file", data, mode, uid, gid)

    def add_symlink(self, path, target):
        self._parents(path)
        self.entries[path] = ("symlink", target, 0o777, 0, 0)

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.add_dir("/".join(parts[:i]))

    def tar(self):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, data, mode, uid, gid = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = self.epoch, mode, uid, gid, "", ""
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return out.getvalue()


def runtime_layer(debs, epoch, ca_bundle_file):
    layer = Layer(epoch)
    for package in ("libc6", "libgcc-s1"):
        with deb_data(debs[package]) as data:
            for member in data.getmembers():
                path = os.path.normpath(member.name).lstrip("./")
                if not path or path == "." or SKIP.match(path):
                    continue
                if member.isdir():
                    layer.add_dir(path, member.mode & 0o7777)
                elif member.issym():
                    layer.add_symlink(path, member.linkname)
                elif member.isfile():
                    layer.add_file(path, data.extractfile(member).read(), member.mode & 0o7777)
    # The CA bundle: what update-ca-certificates builds from the package's Mozilla set (sorted),
    # or a bundle file given instead.
    if ca_bundle_file:
        with open(ca_bundle_file, "rb") as f:
            bundle = f.read()
    else:
        certs = []
        with deb_data(debs["ca-certificates"]) as data:
            for member in sorted(data.getmembers(), key=lambda m: m.name):
                if member.isfile() and "/usr/share/ca-certificates/mozilla/" in "/" + member.name.lstrip("./") \
                        and member.name.endswith(".crt"):
                    certs.append(data.extractfile(member).read().strip() + b"\n")
                elif member.isfile() and "/usr/share/doc/ca-certificates/copyright" in "/" + member.name.lstrip("./"):
                    layer.add_file("usr/share/doc/ca-certificates/copyright", data.extractfile(member).read())
        if len(certs) < 50:
            raise BuildError(f"only {len(certs)} CA certificates in {debs['ca-certificates']}")
        bundle = b"".join(certs)
    if b"-----BEGIN CERTIFICATE-----" not in bundle:
        raise BuildError("the CA bundle holds no certificate")
    layer.add_file(CA_BUNDLE, bundle)
    # The non-root user the image runs as (distroless's `nonroot`), and writable places.
    layer.add_file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
                                 b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    layer.add_file("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    layer.add_file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.add_dir("home/nonroot", 0o700, UID, GID)
    layer.add_dir("tmp", 0o1777)
    layer.add_dir("root", 0o700)
    if not any(p.endswith("ld-linux-x86-64.so.2") for p in layer.entries):
        raise BuildError("libc6 gave no dynamic loader")
    return layer


def binary_layer(binary, epoch):
    layer = Layer(epoch)
    with open(binary, "rb") as f:
        data = f.read()
    if not data.startswith(b"\x7fELF"):
        raise BuildError(f"{binary} is not an ELF executable")
    layer.add_file(BINARY_PATH, data, 0o755)
    return layer


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as f:
        f.write(data)
    return out.getvalue()


# --- Image ---------------------------------------------------------------------------------------

def build(args):
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", args.source_date_epoch))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    debs = download_debs(args.deb_cache)
    version = args.version or run([args.binary, "--version"]).split()[-1]
    blobs = {}
    layers, diff_ids, history = [], [], []
    for layer, comment in (
        (runtime_layer(debs, epoch, args.ca_bundle), "runtime: " + ", ".join(f"{p} {package_version(d)}" for p, d in debs.items())),
        (binary_layer(args.binary, epoch), f"portcullis {version}"),
    ):
        tar = layer.tar()
        blob = gz(tar)
        digest = sha256(blob)
        blobs[digest] = blob
        layers.append({"mediaType": MEDIA_LAYER, "digest": digest, "size": len(blob)})
        diff_ids.append(sha256(tar))
        history.append({"created": created, "created_by": "build/oci-image.py", "comment": comment})
    labels = {
        "org.opencontainers.image.title": "portcullis",
        "org.opencontainers.image.description": "Supply-chain security gate for Kubernetes",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.source": args.source,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.base.name": "debian:" + ", ".join(f"{p}={package_version(d)}" for p, d in debs.items()),
    }
    labels = {k: v for k, v in labels.items() if v}
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Entrypoint": ["/" + BINARY_PATH],
            "Cmd": ["serve"],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SSL_CERT_FILE=/" + CA_BUNDLE,
                "PORTCULLIS_LISTEN=0.0.0.0:8443",
            ],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {"8443/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = sha256(config_bytes)
    blobs[config_digest] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
        "annotations": {k: v for k, v in labels.items() if k != "org.opencontainers.image.base.name"},
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return manifest_bytes, blobs, version


def write_layout(out, manifest_bytes, blobs, tag):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    for digest, blob in list(blobs.items()) + [(sha256(manifest_bytes), manifest_bytes)]:
        with open(os.path.join(out, "blobs", "sha256", digest.split(":")[1]), "wb") as f:
            f.write(blob)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": sha256(manifest_bytes),
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))


# --- Push ----------------------------------------------------------------------------------------

class Registry:
    """The OCI distribution API: monolithic blob uploads, manifest PUT; Basic or token auth."""

    def __init__(self, host, repo, plain_http, username, password):
        self.base = f"{'http' if plain_http else 'https'}://{host}/v2/{repo}"
        self.repo, self.username, self.password, self.token = repo, username, password, None

    def request(self, method, url, data=None, headers=None, retry=True):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.username:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=300)
        except urllib.error.HTTPError as e:
            challenge = e.headers.get("WWW-Authenticate", "")
            if e.code == 401 and retry and challenge.startswith("Bearer "):
                self.token = self.fetch_token(challenge)
                return self.request(method, url, data, headers, retry=False)
            raise BuildError(f"{method} {url}: {e.code} {e.reason}: {e.read()[:300]!r}") from None

    def fetch_token(self, challenge):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        params.setdefault("scope", f"repository:{self.repo}:pull,push")
        headers = {}
        if self.username:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        req = urllib.request.Request(realm + "?" + urllib.parse.urlencode(params), headers=headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.load(r)
        return body.get("token") or body.get("access_token")

    def has_blob(self, digest):
        try:
            self.request("HEAD", f"{self.base}/blobs/{digest}")
            return True
        except BuildError:
            return False

    def put_blob(self, digest, blob):
        if self.has_blob(digest):
            return
        with self.request("POST", f"{self.base}/blobs/uploads/", data=b"") as r:
            location = r.headers["Location"]
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        self.request("PUT", url, data=blob, headers={"Content-Type": "application/octet-stream"}).close()

    def put_manifest(self, reference, manifest):
        self.request("PUT", f"{self.base}/manifests/{reference}", data=manifest,
                     headers={"Content-Type": MEDIA_MANIFEST}).close()


def parse_reference(reference):
    """host/repo:tag -> (host, repo, tag)."""
    host, _, rest = reference.partition("/")
    if not rest or ("." not in host and ":" not in host and host != "localhost"):
        raise BuildError(f"--push {reference!r}: give REGISTRY/REPOSITORY[:TAG], e.g. ghcr.io/acme/portcullis:0.1.0")
    repo, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "latest")
    return host, repo, tag


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, help="the portcullis executable (a release build)")
    parser.add_argument("--out", required=True, help="directory for the OCI image layout (replaced)")
    parser.add_argument("--push", metavar="REGISTRY/REPO[:TAG]", help="push the image there")
    parser.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP (local tests only)")
    parser.add_argument("--deb-cache", default=os.path.join(tempfile.gettempdir(), "portcullis-debs"),
                        help="where downloaded .deb files are kept")
    parser.add_argument("--ca-bundle", help="a PEM CA bundle to ship instead of the ca-certificates package's")
    parser.add_argument("--version", help="the image version label (default: from `portcullis --version`)")
    parser.add_argument("--revision", default="", help="the source revision label (e.g. `git rev-parse HEAD`)")
    parser.add_argument("--source", default="", help="the source repository URL label")
    parser.add_argument("--source-date-epoch", type=int, default=0,
                        help="timestamp of every file and of the image (SOURCE_DATE_EPOCH wins)")
    args = parser.parse_args()
    try:
        manifest, blobs, version = build(args)
        tag = version
        if args.push:
            host, repo, tag = parse_reference(args.push)
        write_layout(args.out, manifest, blobs, tag)
        digest = sha256(manifest)
        print(f"built {args.out} ({len(manifest)} byte manifest, {sum(len(b) for b in blobs.values())} bytes of blobs): {digest}",
              file=sys.stderr)
        if args.push:
            registry = Registry(host, repo, args.plain_http, os.environ.get("REGISTRY_USERNAME"),
                                os.environ.get("REGISTRY_PASSWORD"))
            for blob_digest, blob in blobs.items():
                registry.put_blob(blob_digest, blob)
            registry.put_manifest(tag, manifest)
            print(f"{host}/{repo}@{digest}")
        else:
            print(digest)
    except (BuildError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
