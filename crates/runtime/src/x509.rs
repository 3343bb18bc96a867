//! What AWS IoT reads from a client's X.509 certificate, computed once for
//! every service: the certificate id and the distinguished-name fields that
//! become policy variables.
//!
//! - The certificate id is the lowercase hex SHA-256 of the certificate's DER
//!   encoding (AWS IoT Core API Reference: Certificate, `certificateId`).
//! - The subject and issuer fields are the attributes AWS IoT exposes as
//!   `iot:Certificate.Subject.<field>` and `iot:Certificate.Issuer.<field>`
//!   (AWS IoT Developer Guide: X.509 Certificate AWS IoT Core policy
//!   variables): CommonName, Surname, SerialNumber, Country, State,
//!   Organization, OrganizationalUnit, Title, GivenName, Initials,
//!   GenerationQualifier, DistinguishedNameQualifier and Pseudonym. Other
//!   attribute types (locality, email address...) are not policy variables.
//!
//! A name may hold an attribute type several times (two OrganizationalUnits)
//! or several attributes in one relative distinguished name (a multi-valued
//! RDN such as `CN=a+O=b`): every attribute counts, in certificate order, so
//! one field may have several values ([`by_field`] groups them).
//!
//! Values are read as the directory string types carry them: UTF8String,
//! PrintableString, IA5String and NumericString as they are; BMPString as
//! big-endian UTF-16 (surrogate pairs included); UniversalString as
//! big-endian UTF-32; TeletexString and VisibleString as Latin-1. A value
//! that is not text (an odd-length BMPString, an unpaired surrogate, a
//! code point that is no character, another ASN.1 type) is left out, as
//! if the attribute were absent.

use std::fmt::Write as _;

use herald_policy::CertField;
use sha2::{Digest, Sha256};
use x509_parser::{
    asn1_rs::Tag,
    x509::{AttributeTypeAndValue, X509Name},
};

/// A certificate's id: the lowercase hex SHA-256 of its DER.
pub fn certificate_id(der: &[u8]) -> String {
    let mut id = String::with_capacity(64);
    for byte in Sha256::digest(der) {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// The policy-variable fields of a distinguished name (a certificate's
/// subject or issuer), in certificate order; attributes of other types and
/// values that aren't text are left out.
pub fn name_fields(name: &X509Name<'_>) -> Vec<(CertField, String)> {
    name.iter_attributes()
        .filter_map(|attribute| Some((field(attribute)?, text(attribute)?)))
        .collect()
}

/// Groups fields by field, each field's values in certificate order, the
/// fields in the order they first appear.
pub fn by_field(fields: &[(CertField, String)]) -> Vec<(CertField, Vec<String>)> {
    let mut grouped: Vec<(CertField, Vec<String>)> = Vec::new();
    for (field, value) in fields {
        match grouped.iter_mut().find(|(f, _)| f == field) {
            Some((_, values)) => values.push(value.clone()),
            None => grouped.push((*field, vec![value.clone()])),
        }
    }
    grouped
}

/// The policy variable an attribute type is, if any.
fn field(attribute: &AttributeTypeAndValue<'_>) -> Option<CertField> {
    // The DER content of the OIDs 2.5.4.n (n < 128) is 55 04 n.
    let [0x55, 0x04, n] = attribute.attr_type().as_bytes() else {
        return None;
    };
    Some(match n {
        3 => CertField::CommonName,
        4 => CertField::Surname,
        5 => CertField::SerialNumber,
        6 => CertField::Country,
        8 => CertField::State,
        10 => CertField::Organization,
        11 => CertField::OrganizationalUnit,
        12 => CertField::Title,
        42 => CertField::GivenName,
        43 => CertField::Initials,
        44 => CertField::GenerationQualifier,
        46 => CertField::DistinguishedNameQualifier,
        65 => CertField::Pseudonym,
        _ => return None,
    })
}

/// An attribute's value as text, for the string types X.509 names use.
fn text(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    // UTF8String, PrintableString, IA5String, NumericString.
    if let Ok(text) = attribute.as_str() {
        return Some(text.to_owned());
    }
    let value = attribute.attr_value();
    let data = value.data;
    match value.header.tag() {
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).collect::<Result<_, _>>().ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                })
                .collect()
        }
        // TeletexString in practice carries Latin-1.
        Tag::T61String | Tag::VisibleString => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    // Just enough DER to build names by hand (every length below 256), so
    // that the tests can hold what certificate generators refuse to write:
    // multi-valued RDNs, odd-length BMPStrings, unpaired surrogates.

    const UTF8: u8 = 0x0c;
    const PRINTABLE: u8 = 0x13;
    const T61: u8 = 0x14;
    const IA5: u8 = 0x16;
    const VISIBLE: u8 = 0x1a;
    const UNIVERSAL: u8 = 0x1c;
    const BMP: u8 = 0x1e;
    const INTEGER: u8 = 0x02;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = u8::try_from(content.len()).unwrap();
        let mut out = if len < 128 {
            vec![tag, len]
        } else {
            vec![tag, 0x81, len]
        };
        out.extend_from_slice(content);
        out
    }

    /// An attribute of type 2.5.4.`n`.
    fn attribute(n: u8, tag: u8, value: &[u8]) -> Vec<u8> {
        let oid = tlv(0x06, &[0x55, 0x04, n]);
        tlv(0x30, &[oid, tlv(tag, value)].concat())
    }

    fn rdn(attributes: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x31, &attributes.concat())
    }

    fn fields_of(rdns: &[Vec<u8>]) -> Vec<(CertField, String)> {
        let der = tlv(0x30, &rdns.concat());
        let (rest, name) = X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        name_fields(&name)
    }

    fn utf16be(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    fn owned(fields: &[(CertField, &str)]) -> Vec<(CertField, String)> {
        fields.iter().map(|(f, v)| (*f, (*v).to_owned())).collect()
    }

    #[test]
    fn certificate_ids_are_lowercase_sha256_hex() {
        assert_eq!(
            certificate_id(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            certificate_id(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn utf8_and_printable_strings() {
        let fields = fields_of(&[
            rdn(&[attribute(6, PRINTABLE, b"FR")]),
            rdn(&[attribute(10, UTF8, "Société".as_bytes())]),
            rdn(&[attribute(3, IA5, b"device-1")]),
        ]);
        assert_eq!(
            fields,
            owned(&[
                (CertField::Country, "FR"),
                (CertField::Organization, "Société"),
                (CertField::CommonName, "device-1"),
            ])
        );
        // Not UTF-8 under a UTF8String tag: left out.
        assert!(fields_of(&[rdn(&[attribute(3, UTF8, &[0xff, 0xfe])])]).is_empty());
    }

    #[test]
    fn bmp_strings_are_utf16_big_endian() {
        let fields = fields_of(&[
            rdn(&[attribute(3, BMP, &utf16be("Zoë"))]),
            // A character outside the Basic Multilingual Plane, as a surrogate pair.
            rdn(&[attribute(11, BMP, &utf16be("🛰 unit"))]),
            rdn(&[attribute(10, BMP, b"")]),
        ]);
        assert_eq!(
            fields,
            owned(&[
                (CertField::CommonName, "Zoë"),
                (CertField::OrganizationalUnit, "🛰 unit"),
                (CertField::Organization, ""),
            ])
        );
        // An odd length, and an unpaired surrogate, are no text.
        let odd = [0x00, 0x41, 0x00];
        let unpaired = [0xd8, 0x3d, 0x00, 0x41];
        assert!(fields_of(&[rdn(&[attribute(3, BMP, &odd)])]).is_empty());
        assert!(fields_of(&[rdn(&[attribute(3, BMP, &unpaired)])]).is_empty());
    }

    #[test]
    fn other_string_types() {
        let fields = fields_of(&[
            rdn(&[attribute(3, UNIVERSAL, &[0, 0, 0, b'U', 0, 1, 0xf6, 0x80])]),
            rdn(&[attribute(10, T61, &[b'M', 0xfc, b'n'])]),
            rdn(&[attribute(11, VISIBLE, b"Ops")]),
        ]);
        assert_eq!(
            fields,
            owned(&[
                (CertField::CommonName, "U🚀"),
                (CertField::Organization, "Mün"),
                (CertField::OrganizationalUnit, "Ops"),
            ])
        );
        // A UniversalString whose length is no multiple of 4, or that holds
        // no character, and a value that is no string, are left out.
        assert!(fields_of(&[rdn(&[attribute(3, UNIVERSAL, &[0, 0, 0x41])])]).is_empty());
        assert!(fields_of(&[rdn(&[attribute(3, UNIVERSAL, &[0, 0x11, 0, 0])])]).is_empty());
        assert!(fields_of(&[rdn(&[attribute(3, INTEGER, &[0x05])])]).is_empty());
    }

    #[test]
    fn multi_valued_and_repeated_attributes_keep_certificate_order() {
        let fields = fields_of(&[
            rdn(&[attribute(6, PRINTABLE, b"US")]),
            // One RDN holding two attributes: CN=device+OU=Sensors.
            rdn(&[
                attribute(3, UTF8, b"device"),
                attribute(11, UTF8, b"Sensors"),
            ]),
            rdn(&[attribute(11, UTF8, b"Lab")]),
            // Locality is not a policy variable.
            rdn(&[attribute(7, UTF8, b"Rennes")]),
            rdn(&[attribute(11, UTF8, b"Night shift")]),
        ]);
        assert_eq!(
            fields,
            owned(&[
                (CertField::Country, "US"),
                (CertField::CommonName, "device"),
                (CertField::OrganizationalUnit, "Sensors"),
                (CertField::OrganizationalUnit, "Lab"),
                (CertField::OrganizationalUnit, "Night shift"),
            ])
        );
        assert_eq!(
            by_field(&fields),
            [
                (CertField::Country, vec!["US".to_owned()]),
                (CertField::CommonName, vec!["device".to_owned()]),
                (
                    CertField::OrganizationalUnit,
                    vec![
                        "Sensors".to_owned(),
                        "Lab".to_owned(),
                        "Night shift".to_owned()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn every_policy_variable_attribute_type() {
        let types = [
            (3, CertField::CommonName),
            (4, CertField::Surname),
            (5, CertField::SerialNumber),
            (6, CertField::Country),
            (8, CertField::State),
            (10, CertField::Organization),
            (11, CertField::OrganizationalUnit),
            (12, CertField::Title),
            (42, CertField::GivenName),
            (43, CertField::Initials),
            (44, CertField::GenerationQualifier),
            (46, CertField::DistinguishedNameQualifier),
            (65, CertField::Pseudonym),
        ];
        let rdns: Vec<Vec<u8>> = types
            .iter()
            .map(|(n, _)| rdn(&[attribute(*n, UTF8, format!("v{n}").as_bytes())]))
            .collect();
        let expected: Vec<(CertField, String)> =
            types.iter().map(|(n, f)| (*f, format!("v{n}"))).collect();
        assert_eq!(fields_of(&rdns), expected);
        // An OID outside 2.5.4 is not one (1.2.840.113549.1.9.1, emailAddress).
        let email_oid = tlv(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        );
        let email = tlv(0x30, &[email_oid, tlv(IA5, b"a@b.example")].concat());
        assert!(fields_of(&[rdn(&[email])]).is_empty());
    }
}
