//! Shared access signature (SAS) tokens with Azure IoT Hub semantics.
//!
//! `SharedAccessSignature sr={url-encoded resource URI}&sig={signature}&se={expiry}[&skn={policy}]`
//! where the signature is base64(HMAC-SHA256(base64-decoded key, "{url-encoded resource URI}\n{expiry}")).
//! Verification signs the `sr` value exactly as the client sent it, as Azure does, so clients that
//! encode the resource URI differently (upper- or lower-case hex, `/` encoded or not) all verify.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const SAS_SCHEME: &str = "SharedAccessSignature";

/// Everything but RFC 3986 unreserved characters is percent-encoded, like the Azure SDKs do.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Azure accepts keys of 16 to 64 bytes.
pub const MIN_KEY_BYTES: usize = 16;
pub const MAX_KEY_BYTES: usize = 64;
/// Length of keys the hub generates.
pub const GENERATED_KEY_BYTES: usize = 32;

pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, URL_ENCODE).to_string()
}

/// A symmetric key (device key or shared access policy key). `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey {
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is not valid base64")]
    NotBase64,
    #[error(
        "key is {0} bytes long; keys must be between {MIN_KEY_BYTES} and {MAX_KEY_BYTES} bytes"
    )]
    BadLength(usize),
}

impl SymmetricKey {
    pub fn from_base64(encoded: &str) -> Result<Self, KeyError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| KeyError::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyError::BadLength(bytes.len()));
        }
        Ok(Self { bytes })
    }

    /// A new key of 32 random bytes from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_KEY_BYTES];
        rand::fill(&mut bytes[..]);
        Self { bytes }
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; construction cannot fail.
        match HmacSha256::new_from_slice(&self.bytes) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        }
    }

    /// base64(HMAC-SHA256(key, message)).
    pub fn sign(&self, message: &str) -> String {
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a raw HMAC-SHA256 signature.
    pub fn verify(&self, message: &str, signature: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        mac.verify_slice(signature).is_ok()
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey(<{} bytes, redacted>)", self.bytes.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasParseError {
    #[error("the Authorization header is not a SharedAccessSignature")]
    NotSas,
    #[error("the SharedAccessSignature has a malformed field {0:?}")]
    MalformedField(String),
    #[error("the SharedAccessSignature has the field {0:?} more than once")]
    DuplicateField(String),
    #[error("the SharedAccessSignature has an unknown field {0:?}")]
    UnknownField(String),
    #[error("the SharedAccessSignature lacks the field {0:?}")]
    MissingField(&'static str),
    #[error("the SharedAccessSignature expiry (se) is not a number of seconds")]
    BadExpiry,
    #[error("the SharedAccessSignature signature (sig) is not base64")]
    BadSignature,
    #[error("the SharedAccessSignature field {0:?} is not valid percent-encoded UTF-8")]
    BadEncoding(&'static str),
}

/// A parsed SAS token. The signature is checked with [`SasToken::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as sent (still url-encoded): this is what was signed.
    raw_resource: String,
    /// `sr` decoded once.
    resource: String,
    signature: Vec<u8>,
    raw_expiry: String,
    expiry: u64,
    key_name: Option<String>,
}

impl SasToken {
    /// Parses an `Authorization` header value.
    pub fn parse(header: &str) -> Result<Self, SasParseError> {
        let fields = header
            .trim()
            .strip_prefix(SAS_SCHEME)
            .filter(|rest| rest.starts_with(' '))
            .ok_or(SasParseError::NotSas)?
            .trim();

        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in fields.split('&') {
            let (name, value) = field
                .split_once('=')
                .filter(|(name, value)| !name.is_empty() && !value.is_empty())
                .ok_or_else(|| SasParseError::MalformedField(truncate(field)))?;
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                other => return Err(SasParseError::UnknownField(truncate(other))),
            };
            if slot.replace(value).is_some() {
                return Err(SasParseError::DuplicateField(name.to_owned()));
            }
        }

        let raw_resource = sr.ok_or(SasParseError::MissingField("sr"))?;
        let raw_sig = sig.ok_or(SasParseError::MissingField("sig"))?;
        let raw_expiry = se.ok_or(SasParseError::MissingField("se"))?;

        let resource = decode(raw_resource, "sr")?;
        let signature = BASE64
            .decode(decode(raw_sig, "sig")?)
            .map_err(|_| SasParseError::BadSignature)?;
        let expiry = raw_expiry
            .parse::<u64>()
            .map_err(|_| SasParseError::BadExpiry)?;
        let key_name = skn.map(|name| decode(name, "skn")).transpose()?;

        Ok(Self {
            raw_resource: raw_resource.to_owned(),
            resource,
            signature,
            raw_expiry: raw_expiry.to_owned(),
            expiry,
            key_name,
        })
    }

    /// Creates a token for `resource_uri` (e.g. `myhub.example.com/devices/dev1`) valid until `expiry`
    /// (seconds since the Unix epoch). `key_name` is the policy name for service tokens, `None` for
    /// device-key tokens.
    pub fn generate(
        resource_uri: &str,
        key: &SymmetricKey,
        expiry: u64,
        key_name: Option<&str>,
    ) -> String {
        let encoded_resource = url_encode(resource_uri);
        let signature = key.sign(&format!("{encoded_resource}\n{expiry}"));
        let mut token = format!(
            "{SAS_SCHEME} sr={encoded_resource}&sig={}&se={expiry}",
            url_encode(&signature)
        );
        if let Some(name) = key_name {
            token.push_str("&skn=");
            token.push_str(&url_encode(name));
        }
        token
    }

    /// Whether `key` produced this token's signature (constant-time comparison).
    pub fn verify(&self, key: &SymmetricKey) -> bool {
        key.verify(
            &format!("{}\n{}", self.raw_resource, self.raw_expiry),
            &self.signature,
        )
    }

    /// Whether the token has expired at `now` (seconds since the epoch), allowing `skew_secs` of
    /// clock difference between the device and the hub.
    pub fn is_expired(&self, now: u64, skew_secs: u64) -> bool {
        now > self.expiry.saturating_add(skew_secs)
    }

    /// The resource URI (`sr`), decoded once.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// The shared access policy name (`skn`), present on service tokens.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Whether the token's resource covers `target` (host first, then path segments): the token's
    /// segments must be a non-empty prefix of the target's. The host compares case-insensitively,
    /// other segments exactly; a segment matches whether the client percent-encoded it in the
    /// resource URI or not.
    pub fn covers(&self, target: &[&str]) -> bool {
        let resource = self.resource.trim_end_matches('/');
        let segments: Vec<&str> = resource.split('/').collect();
        if resource.is_empty() || segments.len() > target.len() {
            return false;
        }
        segments
            .iter()
            .zip(target)
            .enumerate()
            .all(|(index, (given, expected))| {
                if index == 0 {
                    return given.eq_ignore_ascii_case(expected);
                }
                *given == *expected
                    || percent_decode_str(given)
                        .decode_utf8()
                        .is_ok_and(|decoded| decoded == *expected)
            })
    }
}

fn decode(value: &str, field: &'static str) -> Result<String, SasParseError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| SasParseError::BadEncoding(field))
}

fn truncate(value: &str) -> String {
    value.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SymmetricKey {
        SymmetricKey::from_base64("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=").unwrap()
    }

    #[test]
    fn generated_tokens_parse_and_verify() {
        let token = SasToken::generate("hub.example.com/devices/dev1", &key(), 2_000_000_000, None);
        let parsed = SasToken::parse(&token).unwrap();
        assert!(parsed.verify(&key()));
        assert_eq!(parsed.resource(), "hub.example.com/devices/dev1");
        assert_eq!(parsed.expiry(), 2_000_000_000);
        assert_eq!(parsed.key_name(), None);
        assert!(!parsed.verify(&SymmetricKey::generate()));
    }

    #[test]
    fn matches_a_signature_computed_independently() {
        // Computed with Python: base64(hmac.new(b64decode(key), b"hub.example.com%2Fdevices%2Fdev1\n1700000000", sha256))
        let expected = "+4eIgt6K98t7hqFf/zpDzleDv71/BHUINh1e8elrp7E=";
        assert_eq!(
            key().sign("hub.example.com%2Fdevices%2Fdev1\n1700000000"),
            expected
        );
        let header = format!(
            "SharedAccessSignature sr=hub.example.com%2Fdevices%2Fdev1&sig={}&se=1700000000",
            url_encode(expected)
        );
        assert!(SasToken::parse(&header).unwrap().verify(&key()));
    }

    #[test]
    fn verifies_the_resource_as_sent_whatever_its_encoding() {
        for sr in [
            "hub.example.com%2fdevices%2fdev1",
            "hub.example.com/devices/dev1",
        ] {
            let sig = key().sign(&format!("{sr}\n1700000000"));
            let header = format!(
                "SharedAccessSignature sig={}&se=1700000000&sr={sr}",
                url_encode(&sig)
            );
            let token = SasToken::parse(&header).unwrap();
            assert!(token.verify(&key()), "{sr}");
            assert!(token.covers(&["hub.example.com", "devices", "dev1"]));
        }
    }

    #[test]
    fn tampering_with_expiry_or_resource_breaks_the_signature() {
        let token = SasToken::generate("hub/devices/dev1", &key(), 1_900_000_000, None);
        let later = token.replace("se=1900000000", "se=1900000001");
        assert!(!SasToken::parse(&later).unwrap().verify(&key()));
        let other = token.replace("dev1", "dev2");
        assert!(!SasToken::parse(&other).unwrap().verify(&key()));
    }

    #[test]
    fn policy_tokens_carry_the_key_name() {
        let token = SasToken::generate("hub", &key(), 1, Some("iothubowner"));
        assert_eq!(
            SasToken::parse(&token).unwrap().key_name(),
            Some("iothubowner")
        );
    }

    #[test]
    fn expiry_allows_the_configured_skew_only() {
        let token = SasToken::parse(&SasToken::generate("hub", &key(), 1000, None)).unwrap();
        assert!(!token.is_expired(1000, 0));
        assert!(token.is_expired(1001, 0));
        assert!(!token.is_expired(1060, 60));
        assert!(token.is_expired(1061, 60));
    }

    #[test]
    fn covers_prefixes_by_whole_segments_only() {
        let token = |sr: &str| SasToken::parse(&SasToken::generate(sr, &key(), 1, None)).unwrap();
        let target = ["hub.example.com", "devices", "dev1", "messages", "events"];
        assert!(token("hub.example.com").covers(&target));
        assert!(token("HUB.example.com/devices").covers(&target));
        assert!(token("hub.example.com/devices/dev1").covers(&target));
        assert!(token("hub.example.com/devices/dev1/").covers(&target));
        assert!(!token("hub.example.com/devices/dev").covers(&target));
        assert!(!token("hub.example.com/devices/dev10").covers(&target));
        assert!(!token("hub.example.com/devices/Dev1").covers(&target));
        assert!(!token("other.example.com/devices/dev1").covers(&target));
        assert!(!token("hub.example.co").covers(&target));
    }

    #[test]
    fn covers_device_ids_with_encoded_characters() {
        // The SDKs percent-encode the device id inside the resource URI; `sr` then encodes it again.
        let token =
            SasToken::parse(&SasToken::generate("hub/devices/a%23b", &key(), 1, None)).unwrap();
        assert!(token.covers(&["hub", "devices", "a#b"]));
        let plain =
            SasToken::parse(&SasToken::generate("hub/devices/a#b", &key(), 1, None)).unwrap();
        assert!(plain.covers(&["hub", "devices", "a#b"]));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let cases = [
            ("Bearer abc", SasParseError::NotSas),
            (
                "SharedAccessSignaturesr=a&sig=YQ==&se=1",
                SasParseError::NotSas,
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==",
                SasParseError::MissingField("se"),
            ),
            (
                "SharedAccessSignature sig=YQ==&se=1",
                SasParseError::MissingField("sr"),
            ),
            (
                "SharedAccessSignature sr=a&se=1",
                SasParseError::MissingField("sig"),
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==&se=soon",
                SasParseError::BadExpiry,
            ),
            (
                "SharedAccessSignature sr=a&sig=***&se=1",
                SasParseError::BadSignature,
            ),
            (
                "SharedAccessSignature sr=a&sr=b&sig=YQ==&se=1",
                SasParseError::DuplicateField("sr".into()),
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==&se=1&x=1",
                SasParseError::UnknownField("x".into()),
            ),
            (
                "SharedAccessSignature sr=a&sig=&se=1",
                SasParseError::MalformedField("sig=".into()),
            ),
            (
                "SharedAccessSignature sr=%ff&sig=YQ==&se=1",
                SasParseError::BadEncoding("sr"),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(SasToken::parse(header), Err(expected), "{header}");
        }
    }

    #[test]
    fn keys_are_validated_and_never_printed() {
        assert_eq!(
            SymmetricKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
        assert_eq!(
            SymmetricKey::from_base64("YWJj"),
            Err(KeyError::BadLength(3))
        );
        let generated = SymmetricKey::generate();
        assert_eq!(
            SymmetricKey::from_base64(&generated.to_base64()).unwrap(),
            generated
        );
        assert_ne!(SymmetricKey::generate(), generated);
        assert!(!format!("{generated:?}").contains(&generated.to_base64()));
    }
}
