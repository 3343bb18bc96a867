//! PEM: reading the one block a request or certificate must be, and
//! encoding DER the way rcgen and OpenSSL do.

use std::fmt::Write as _;

use x509_parser::pem::Pem;

/// The DER content of the only PEM block of `text`, whose label must be one
/// of `labels`. Lines are trimmed first (PEM pasted with indentation or CRLF
/// line ends is fine); text outside the block is ignored.
pub(super) fn single_pem_block(text: &str, labels: &[&str]) -> Result<Vec<u8>, String> {
    let normalized: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .flat_map(|line| [line, "\n"])
        .collect();
    let mut blocks = Pem::iter_from_buffer(normalized.as_bytes());
    let block = match blocks.next() {
        None => return Err(format!("no PEM {} block found", labels[0])),
        Some(Err(e)) => return Err(format!("invalid PEM: {e}")),
        Some(Ok(block)) => block,
    };
    if blocks.next().is_some() {
        return Err(format!(
            "expected exactly one PEM {} block, found several",
            labels[0]
        ));
    }
    if !labels.contains(&block.label.as_str()) {
        return Err(format!(
            "expected a PEM {} block, found {}",
            labels[0], block.label
        ));
    }
    if block.contents.is_empty() {
        return Err(format!("the PEM {} block is empty", labels[0]));
    }
    Ok(block.contents)
}

/// PEM-encodes `der`: base64 in lines of 64 characters, LF line ends.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for (i, c) in base64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    let _ = writeln!(pem, "\n-----END {label}-----");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

    #[test]
    fn pem_encoding_matches_rcgen() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::default().self_signed(&key).unwrap();
        assert_eq!(pem_encode("CERTIFICATE", cert.der()), cert.pem());
        for len in 0..8 {
            let data: Vec<u8> = (0..len).map(|i| i as u8 * 37).collect();
            let pem = pem_encode("X", &data);
            if len > 0 {
                assert_eq!(single_pem_block(&pem, &["X"]).unwrap(), data);
            }
        }
    }
}
