//! How go-yaml v3 (the emitter sops uses) writes a string scalar: the style `encoder.stringv`
//! asks for, corrected by `yaml_emitter_analyze_scalar` / `select_scalar_style`, and the escapes
//! of `write_double_quoted_scalar`. Lines are never folded (go-yaml v3 does not wrap). Pure.

use std::fmt::Write as _;

use super::tree::Value;
use super::yaml_scalar::resolve;

/// Where a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A value in block context.
    Block,
    /// Inside a flow collection (`[…]`, `{…}`).
    Flow,
    /// A mapping key (a simple key in block context).
    Key,
}

/// go-yaml `is_printable`: LF, printable ASCII, U+00A0–U+D7FF, U+E000–U+FFFD except the BOM.
/// Characters beyond the BMP are not printable to go-yaml v3 (they are escaped).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{feff}'
}

/// go-yaml `is_break`.
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// YAML 1.1 booleans that go-yaml quotes (`isOldBool`).
fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off" | "OFF"
    )
}

/// go-yaml `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (s, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return false;
    }
    let mut parts = s.split(':');
    let head = parts.next().unwrap_or("");
    if !head.starts_with(|c: char| c.is_ascii_digit()) || !head.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return false;
    }
    let mut sexagesimal = 0;
    for p in parts {
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
        sexagesimal += 1;
    }
    sexagesimal > 0
}

struct Analysis {
    multiline: bool,
    flow_plain: bool,
    block_plain: bool,
    single_quoted: bool,
}

/// go-yaml `yaml_emitter_analyze_scalar` (unicode output).
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis { multiline: false, flow_plain: false, block_plain: true, single_quoted: true };
    }
    let (mut block_ind, mut flow_ind) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        (block_ind, flow_ind) = (true, true);
    }
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break, mut prev_space, mut prev_break) = (false, false, false, false);
    let mut preceded_by_ws = true;
    let mut chars = s.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let followed_by_ws = next.is_none_or(|n| n == ' ' || n == '\t');
        let last = next.is_none();
        if first {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => {
                    (flow_ind, block_ind) = (true, true);
                }
                '?' | ':' => {
                    flow_ind = true;
                    block_ind |= followed_by_ws;
                }
                '-' if followed_by_ws => (flow_ind, block_ind) = (true, true),
                _ => {}
            }
        } else {
            match c {
                ',' | '?' | '[' | ']' | '{' | '}' => flow_ind = true,
                ':' => {
                    flow_ind = true;
                    block_ind |= followed_by_ws;
                }
                '#' if preceded_by_ws => (flow_ind, block_ind) = (true, true),
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= prev_break;
            (prev_space, prev_break) = (true, false);
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= first;
            trailing_break |= last;
            space_break |= prev_space;
            (prev_space, prev_break) = (false, true);
        } else {
            (prev_space, prev_break) = (false, false);
        }
        preceded_by_ws = matches!(c, ' ' | '\t' | '\0') || is_break(c);
        first = false;
    }
    let mut a = Analysis { multiline: line_breaks, flow_plain: true, block_plain: true, single_quoted: true };
    if leading_space || leading_break || trailing_space || trailing_break || line_breaks {
        (a.flow_plain, a.block_plain) = (false, false);
    }
    if break_space || space_break || tabs || special {
        (a.flow_plain, a.block_plain, a.single_quoted) = (false, false, false);
    }
    a.flow_plain &= !flow_ind;
    a.block_plain &= !block_ind;
    a
}

/// A string scalar as go-yaml writes it in `ctx`. Strings with line feeds come out double-quoted
/// (the caller turns them into literal blocks where go-yaml would); so do strings with U+2028 /
/// U+2029, which go-yaml writes raw in single quotes followed by indentation: the same string to a
/// YAML 1.1 reader, but spaces added to it for a YAML 1.2 reader (U+2028 is no line break there),
/// where the escape `\L` reads the same everywhere.
#[must_use]
pub fn str_scalar_in(s: &str, ctx: Context) -> String {
    let can_plain = matches!(resolve(s, saphyr_parser::ScalarStyle::Plain, None), Some(Value::Str(_)))
        && !is_base60_float(s)
        && !is_old_bool(s);
    let a = analyze(s);
    let double =
        s.contains('\n') || !can_plain || (ctx == Context::Key && a.multiline) || s.contains(['\u{2028}', '\u{2029}']);
    if !double {
        let plain_ok = match ctx {
            Context::Flow => a.flow_plain && !s.is_empty(),
            Context::Key => a.block_plain && !s.is_empty(),
            Context::Block => a.block_plain,
        };
        if plain_ok {
            return s.to_owned();
        }
        if a.single_quoted {
            return format!("'{}'", s.replace('\'', "''"));
        }
    }
    double_quoted(s)
}

/// go-yaml `yaml_emitter_write_double_quoted_scalar` (no folding).
#[must_use]
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    // go-yaml's `is_bom(value, i)` looks at the start of the value whatever `i` is: after a leading
    // BOM every character is escaped.
    let escape_all = s.starts_with('\u{feff}');
    for c in s.chars() {
        if !escape_all && printable(c) && !is_break(c) && c != '"' && c != '\\' {
            out.push(c);
            continue;
        }
        let esc = match c {
            '\0' => "\\0",
            '\u{7}' => "\\a",
            '\u{8}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{b}' => "\\v",
            '\u{c}' => "\\f",
            '\r' => "\\r",
            '\u{1b}' => "\\e",
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{85}' => "\\N",
            '\u{a0}' => "\\_",
            '\u{2028}' => "\\L",
            '\u{2029}' => "\\P",
            _ => {
                let v = c as u32;
                let _ = match v {
                    0..=0xFF => write!(out, "\\x{v:02X}"),
                    0x100..=0xFFFF => write!(out, "\\u{v:04X}"),
                    _ => write!(out, "\\U{v:08X}"),
                };
                continue;
            }
        };
        out.push_str(esc);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_and_escapes_as_go_yaml() {
        // Expected values from sops 3.11 (go-yaml v3.0.4) decrypting the same strings.
        for (s, go) in [
            ("\u{80}", "\"\\x80\""),
            ("a\u{85}b", "\"a\\Nb\""),
            ("a\u{9f}b", "\"a\\x9Fb\""),
            ("\u{a0}", "\u{a0}"),
            ("a\u{fffe}b", "\"a\\uFFFEb\""),
            ("\u{ffff}", "\"\\uFFFF\""),
            ("a\u{1F600}b", "\"a\\U0001F600b\""),
            ("\u{7}", "\"\\a\""),
            ("a\u{1b}b", "\"a\\eb\""),
            ("\u{ad}", "\u{ad}"),
            ("a\u{feff}b", "\"a\\uFEFFb\""),
            ("\u{feff}a -\u{a0}\"", "\"\\uFEFF\\x61\\x20\\x2D\\_\\\"\""),
            ("a\tb", "\"a\\tb\""),
            ("\u{7f}", "\"\\x7F\""),
            ("a\0b", "\"a\\0b\""),
            ("\u{fffd}", "\u{fffd}"),
            ("\u{b}", "\"\\v\""),
            ("yes", "\"yes\""),
            ("1:20", "\"1:20\""),
            (" lead", "' lead'"),
            ("it's", "it's"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("#c", "'#c'"),
            ("", "\"\""),
            ("a,b", "a,b"),
        ] {
            assert_eq!(str_scalar_in(s, Context::Block), go, "{s:?}");
        }
        assert_eq!(str_scalar_in("a,b", Context::Flow), "'a,b'");
        assert_eq!(str_scalar_in("", Context::Key), "\"\"");
        assert_eq!(str_scalar_in("a\u{2028}b", Context::Block), "\"a\\Lb\"");
        assert!(is_base60_float("190:20:30.15") && !is_base60_float("1:60") && !is_base60_float("a:1"));
    }
}
