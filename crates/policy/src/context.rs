//! What is known about the connection a request comes from: the values of
//! policy variables and condition keys.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use crate::key::{CertPart, Key, Pick};

/// The connection-level facts a policy can refer to.
///
/// Build one per connection (or per `TestAuthorization` call) with the
/// `with_*` methods; evaluation borrows from it and never copies. A value
/// left unset is *missing*: a variable naming it can't be resolved, so the
/// statement using it doesn't match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    client_id: Option<String>,
    thing_name: Option<String>,
    thing_type_name: Option<String>,
    thing_attributes: BTreeMap<String, String>,
    is_attached: Option<bool>,
    subject: CertFields,
    issuer: CertFields,
    source_ip: Option<(IpAddr, String)>,
}

impl Context {
    /// An empty context: every variable is missing.
    pub fn new() -> Context {
        Context::default()
    }

    /// `iot:ClientId`: the MQTT client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Context {
        self.client_id = Some(client_id.into());
        self
    }

    /// `iot:Connection.Thing.ThingName` (alias `iot:Thing.ThingName`).
    pub fn with_thing_name(mut self, thing_name: impl Into<String>) -> Context {
        self.thing_name = Some(thing_name.into());
        self
    }

    /// `iot:Connection.Thing.ThingTypeName`.
    pub fn with_thing_type_name(mut self, thing_type_name: impl Into<String>) -> Context {
        self.thing_type_name = Some(thing_type_name.into());
        self
    }

    /// One `iot:Connection.Thing.Attributes[name]`; names are case-sensitive.
    pub fn with_thing_attribute(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Context {
        self.thing_attributes.insert(name.into(), value.into());
        self
    }

    /// `iot:Connection.Thing.IsAttached`: whether the principal is attached
    /// to the thing (`AttachThingPrincipal`).
    pub fn with_attached(mut self, attached: bool) -> Context {
        self.is_attached = Some(attached);
        self
    }

    /// The values of one subject field of the client certificate, in
    /// certificate order (`${iot:Certificate.Subject.<field>.N}` is the N-th).
    /// Setting no values leaves the field missing.
    pub fn with_subject_field<V: Into<String>>(
        mut self,
        field: CertField,
        values: impl IntoIterator<Item = V>,
    ) -> Context {
        self.subject.set(field, values);
        self
    }

    /// The values of one issuer field of the client certificate.
    pub fn with_issuer_field<V: Into<String>>(
        mut self,
        field: CertField,
        values: impl IntoIterator<Item = V>,
    ) -> Context {
        self.issuer.set(field, values);
        self
    }

    /// `aws:SourceIp`: the client's address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Context {
        self.source_ip = Some((ip, ip.to_string()));
        self
    }

    /// The client id, if set.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The associated thing's name, if set.
    pub fn thing_name(&self) -> Option<&str> {
        self.thing_name.as_deref()
    }

    /// The client's address, if set.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip.as_ref().map(|(ip, _)| *ip)
    }

    /// The value of a variable or condition key, borrowed: the hot path of
    /// evaluation, so it must not allocate.
    pub(crate) fn resolve(&self, key: &Key) -> Option<&str> {
        match key {
            Key::ClientId => self.client_id.as_deref(),
            Key::SourceIp => self.source_ip.as_ref().map(|(_, text)| text.as_str()),
            Key::ThingName => self.thing_name.as_deref(),
            Key::ThingTypeName => self.thing_type_name.as_deref(),
            Key::ThingAttribute(name) => self.thing_attributes.get(&**name).map(String::as_str),
            Key::IsAttached => self
                .is_attached
                .map(|attached| if attached { "true" } else { "false" }),
            Key::Certificate { part, field, pick } => {
                let fields = match part {
                    CertPart::Subject => &self.subject,
                    CertPart::Issuer => &self.issuer,
                };
                fields.get(*field, *pick)
            }
            Key::Unknown(_) => None,
        }
    }
}

/// An X.509 distinguished-name field that AWS IoT exposes as a certificate
/// policy variable (`iot:Certificate.Subject.<field>` and `...Issuer.<field>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertField {
    CommonName,
    Country,
    Organization,
    OrganizationalUnit,
    State,
    SerialNumber,
    Title,
    Surname,
    GivenName,
    Initials,
    Pseudonym,
    GenerationQualifier,
    DistinguishedNameQualifier,
}

impl CertField {
    /// Every field, in declaration order.
    pub const ALL: [CertField; 13] = [
        CertField::CommonName,
        CertField::Country,
        CertField::Organization,
        CertField::OrganizationalUnit,
        CertField::State,
        CertField::SerialNumber,
        CertField::Title,
        CertField::Surname,
        CertField::GivenName,
        CertField::Initials,
        CertField::Pseudonym,
        CertField::GenerationQualifier,
        CertField::DistinguishedNameQualifier,
    ];

    /// The name used in policy variables, e.g. `CommonName`.
    pub fn name(self) -> &'static str {
        match self {
            CertField::CommonName => "CommonName",
            CertField::Country => "Country",
            CertField::Organization => "Organization",
            CertField::OrganizationalUnit => "OrganizationalUnit",
            CertField::State => "State",
            CertField::SerialNumber => "SerialNumber",
            CertField::Title => "Title",
            CertField::Surname => "Surname",
            CertField::GivenName => "GivenName",
            CertField::Initials => "Initials",
            CertField::Pseudonym => "Pseudonym",
            CertField::GenerationQualifier => "GenerationQualifier",
            CertField::DistinguishedNameQualifier => "DistinguishedNameQualifier",
        }
    }

    /// The field with this name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<CertField> {
        CertField::ALL
            .into_iter()
            .find(|field| field.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for CertField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The subject or the issuer of a certificate: each field's values, plus
/// their comma-joined `.List` form computed once when the field is set.
/// Only the fields set take room (a certificate names a few; a password
/// principal none), in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CertFields {
    fields: Vec<(CertField, FieldValues)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldValues {
    values: Vec<String>,
    list: String,
}

impl CertFields {
    fn set<V: Into<String>>(&mut self, field: CertField, values: impl IntoIterator<Item = V>) {
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        let at = self.fields.iter().position(|(f, _)| *f == field);
        if values.is_empty() {
            if let Some(at) = at {
                self.fields.remove(at);
            }
            return;
        }
        let list = values.join(",");
        let entry = FieldValues { values, list };
        match at {
            Some(at) => self.fields[at].1 = entry,
            None => self.fields.push((field, entry)),
        }
    }

    fn get(&self, field: CertField, pick: Pick) -> Option<&str> {
        let (_, values) = self.fields.iter().find(|(f, _)| *f == field)?;
        match pick {
            Pick::Index(index) => values.values.get(index).map(String::as_str),
            Pick::List => Some(&values.list),
        }
    }
}
