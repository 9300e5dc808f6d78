//! Leaf values as sops prints and hashes them (Go formatting).

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha512};

/// Turns decrypted bytes into a value of the declared type and hashes it into the MAC the way
/// sops does; `None` for a comment (neither output nor hashed).
pub(super) fn typed_value(
    kind: &str,
    bytes: &[u8],
    mac: &mut Sha512,
) -> Result<Option<Value>, &'static str> {
    let text = || std::str::from_utf8(bytes).map_err(|_| "its decrypted content is not UTF-8");
    let value = match kind {
        "str" => {
            mac.update(bytes);
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        "int" => {
            let int: i64 = text()?
                .parse()
                .map_err(|_| "its decrypted content is not an integer")?;
            mac.update(int.to_string());
            Value::from(int)
        }
        "float" => {
            let float: f64 = text()?
                .parse()
                .map_err(|_| "its decrypted content is not a number")?;
            let value = float_value(float).ok_or("it decrypts to an infinite or NaN number")?;
            mac.update(go_float(float));
            value
        }
        "bool" => {
            let b = match text()? {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => return Err("its decrypted content is not a boolean"),
            };
            mac.update(if b { "True" } else { "False" });
            Value::Bool(b)
        }
        "bytes" => {
            // Go's JSON encoding of a byte slice, as `sops decrypt --output-type json` prints it.
            mac.update(bytes);
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        "time" => {
            // sops wrote Go's `time.Time` text form (RFC 3339), which is also how it hashes it.
            let text = text()?;
            mac.update(bytes);
            Value::String(text.to_owned())
        }
        "comment" => return Ok(None),
        _ => return Err("its type is unknown"),
    };
    Ok(Some(value))
}

/// The bytes sops hashes for an unencrypted leaf (Go's `ToBytes`).
pub(super) fn plain_mac_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bool(true) => b"True".to_vec(),
        Value::Bool(false) => b"False".to_vec(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string().into_bytes()
            } else {
                // Beyond i64 sops (reading JSON as float64) hashes the float.
                go_float(n.as_f64().unwrap_or(f64::NAN)).into_bytes()
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => Vec::new(),
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest representation that round-trips,
/// never with an exponent. Rust's `Display` for `f64` prints exactly that for finite values.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

/// A float as `sops decrypt --output-type json` prints it: integral values below 1e21 without a
/// fraction (so they read back as integers); `None` for infinities and NaN.
fn float_value(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // `i64::MAX as f64` and `u64::MAX as f64` are 2^63 and 2^64.
        if f >= i64::MIN as f64 && f < i64::MAX as f64 {
            return Some(Value::from(f as i64));
        }
        if f >= 0.0 && f < u64::MAX as f64 {
            return Some(Value::from(f as u64));
        }
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// Unencrypted leaves as `sops decrypt --output-type json` prints them.
pub(super) fn normalize_number(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(float_value)
            .unwrap_or_else(|| value.clone()),
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_hashed_like_go() {
        assert_eq!(go_float(0.75), "0.75");
        assert_eq!(go_float(2.0), "2");
        assert_eq!(go_float(-0.5), "-0.5");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(1e-7), "0.0000001");
        assert_eq!(go_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(float_value(2.0), Some(Value::from(2)));
        assert_eq!(
            float_value(1e21),
            serde_json::Number::from_f64(1e21).map(Value::Number)
        );
        assert_eq!(float_value(f64::NAN), None);
    }
}
