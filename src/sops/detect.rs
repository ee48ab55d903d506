//! Finding SOPS ciphertext left in a Kubernetes object, for the admission engine: an object that
//! still carries SOPS metadata or `ENC[AES256_GCM,…]` values was applied without being decrypted.
//! Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::value::ENC_PREFIX;

/// Where `object` still carries SOPS metadata or ciphertext, e.g.
/// `"data.password holds a SOPS ENC[AES256_GCM,…] value"`; `None` when it carries none.
#[must_use]
pub fn find_ciphertext(object: &Value) -> Option<String> {
    if let Some(sops) = object.get("sops")
        && sops.is_object()
        && (sops.get("mac").is_some() || sops.get("lastmodified").is_some())
    {
        return Some(
            "the object has SOPS metadata (a top-level `sops` key): it was applied without being decrypted".to_owned(),
        );
    }
    let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
    let mut path = Vec::new();
    walk(object, &mut path, is_secret)
}

fn walk(v: &Value, path: &mut Vec<String>, is_secret: bool) -> Option<String> {
    match v {
        Value::String(s) => {
            if s.contains(ENC_PREFIX) {
                return Some(format!("{} holds a SOPS ENC[AES256_GCM,…] value", display(path)));
            }
            // Secret data values are base64: look inside.
            if is_secret && path.len() == 2 && path[0] == "data" {
                let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                if let Ok(bytes) = STANDARD.decode(compact)
                    && contains(&bytes, ENC_PREFIX.as_bytes())
                {
                    return Some(format!("{} holds a SOPS ENC[AES256_GCM,…] value (base64-encoded)", display(path)));
                }
            }
            None
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(format!("[{i}]"));
            let r = walk(item, path, is_secret);
            path.pop();
            r
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            path.push(k.clone());
            let r = walk(item, path, is_secret);
            path.pop();
            r
        }),
        _ => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn display(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if !out.is_empty() && !p.starts_with('[') {
            out.push('.');
        }
        out.push_str(p);
    }
    if out.is_empty() { "(top level)".to_owned() } else { out }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_metadata_values_and_base64() {
        let obj = json!({"kind": "Secret", "sops": {"mac": "x", "lastmodified": "y"}});
        assert!(find_ciphertext(&obj).unwrap().contains("SOPS metadata"));
        let obj = json!({"kind": "Secret", "stringData": {"password": "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]"}});
        assert_eq!(find_ciphertext(&obj).unwrap(), "stringData.password holds a SOPS ENC[AES256_GCM,…] value");
        let b64 = STANDARD.encode("ENC[AES256_GCM,data:x]");
        let obj = json!({"kind": "Secret", "data": {"password": b64}});
        assert!(find_ciphertext(&obj).unwrap().starts_with("data.password holds"));
        let obj = json!({"kind": "ConfigMap", "data": {"a": "plain"}, "spec": {"list": [{"x": "ENC[AES256_GCM,"}]}});
        assert_eq!(find_ciphertext(&obj).unwrap(), "spec.list[0].x holds a SOPS ENC[AES256_GCM,…] value");
        assert_eq!(find_ciphertext(&json!({"kind": "Secret", "data": {"a": "aGVsbG8="}})), None);
        assert_eq!(find_ciphertext(&json!({"sops": "just a key"})), None);
    }
}
