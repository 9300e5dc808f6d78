//! Just enough DER to name a certificate's issuer in an error (`CN=…, O=…`).

/// The issuer of the X.509 certificate `cert`, most specific part first, or None when it cannot
/// be read.
pub(super) fn issuer(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = tlv(cert)?;
    let (_, mut tbs, _) = tlv(certificate)?;
    // [0] version, when present.
    if tbs.first() == Some(&0xA0) {
        tbs = tlv(tbs)?.2;
    }
    let (_, _serial, rest) = tlv(tbs)?;
    let (_, _algorithm, rest) = tlv(rest)?;
    let (_, mut name, _) = tlv(rest)?;
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (_, mut set, rest) = tlv(name)?;
        name = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = tlv(set)?;
            set = rest;
            let (_, oid, value) = tlv(attribute)?;
            let (_, value, _) = tlv(value)?;
            let label = match oid {
                [0x55, 4, 3] => "CN",
                [0x55, 4, 10] => "O",
                [0x55, 4, 11] => "OU",
                [0x55, 4, 6] => "C",
                _ => continue,
            };
            parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
        }
    }
    parts.reverse();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// One tag-length-value: (tag, value, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let length = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        rest = &rest[n..];
        length
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}
