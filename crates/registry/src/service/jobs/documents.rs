//! Job documents given by `documentSource`: on AWS IoT an Amazon S3 object
//! URL; Herald, which has no S3, reads the object from its documents
//! directory (`jobs.documents_dir`), where `<bucket>/<key>` is the file's
//! path. The document is read once, when the job or template is created,
//! and kept with it, as AWS IoT keeps a copy (GetJobDocument returns it).
//!
//! Accepted forms (AWS IoT API Reference: CreateJob, `documentSource`):
//! `https://s3.amazonaws.com/<bucket>/<key>`,
//! `https://s3.<region>.amazonaws.com/<bucket>/<key>`,
//! `https://<bucket>.s3.amazonaws.com/<key>`,
//! `https://<bucket>.s3.<region>.amazonaws.com/<key>` and
//! `s3://<bucket>/<key>`; the key may be percent-encoded.

use std::path::{Path, PathBuf};

use herald_proto::error::AwsError;

use crate::domain::{
    invalid,
    jobs::{MAX_DOCUMENT_BYTES, check_document},
};

/// `documentSource`'s bucket and key (decoded), or why it is not an S3
/// object URL Herald reads.
pub(super) fn bucket_and_key(source: &str) -> Result<(String, String), AwsError> {
    let refuse = |why: &str| {
        invalid(format!(
            "documentSource {source:?} is not an Amazon S3 object URL: {why}"
        ))
    };
    let (bucket, key) = if let Some(rest) = source.strip_prefix("s3://") {
        rest.split_once('/').ok_or_else(|| refuse("no key"))?
    } else if let Some(rest) = source.strip_prefix("https://") {
        let (host, path) = rest.split_once('/').ok_or_else(|| refuse("no path"))?;
        if is_s3_endpoint(host) {
            path.split_once('/').ok_or_else(|| refuse("no key"))?
        } else {
            let bucket = host
                .split_once(".s3.")
                .filter(|(_, endpoint)| is_s3_endpoint(&format!("s3.{endpoint}")))
                .map(|(bucket, _)| bucket)
                .ok_or_else(|| refuse("not an S3 host"))?;
            (bucket, path)
        }
    } else {
        return Err(refuse("not https:// or s3://"));
    };
    if bucket.is_empty() || bucket.contains(['/', '\\', '\0']) || bucket.starts_with('.') {
        return Err(refuse("a bucket name is needed"));
    }
    let key =
        percent_decode(key).ok_or_else(|| refuse("the key is not valid percent-encoded UTF-8"))?;
    let segments_ok = key
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']));
    if !segments_ok {
        return Err(refuse("the key has an empty, '.' or '..' segment"));
    }
    Ok((bucket.to_owned(), key))
}

/// `s3.amazonaws.com` or `s3.<region>.amazonaws.com`.
fn is_s3_endpoint(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("s3.") else {
        return false;
    };
    rest == "amazonaws.com"
        || rest.strip_suffix(".amazonaws.com").is_some_and(|region| {
            !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// `%XX` escapes to bytes, by characters; `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let high = chars.next()?.to_digit(16)?;
            let low = chars.next()?.to_digit(16)?;
            bytes.push(u8::try_from(high * 16 + low).ok()?);
        } else {
            let mut buf = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    String::from_utf8(bytes).ok()
}

/// Reads the document `source` names from `dir`.
pub(super) async fn read(dir: &Path, source: &str) -> Result<String, AwsError> {
    let (bucket, key) = bucket_and_key(source)?;
    let path: PathBuf = dir.join(&bucket).join(&key);
    let missing = || {
        invalid(format!(
            "documentSource {source:?}: no document {bucket}/{key} in Herald's documents directory"
        ))
    };
    let metadata = tokio::fs::metadata(&path).await.map_err(|_| missing())?;
    if !metadata.is_file() {
        return Err(missing());
    }
    if metadata.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(invalid(format!(
            "documentSource {source:?}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let bytes = tokio::fs::read(&path).await.map_err(|_| missing())?;
    let document = String::from_utf8(bytes).map_err(|_| {
        invalid(format!(
            "documentSource {source:?}: the document is not UTF-8 text"
        ))
    })?;
    check_document(&document)?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_object_urls() {
        let ok = |source: &str| bucket_and_key(source).unwrap();
        let pair = |b: &str, k: &str| (b.to_owned(), k.to_owned());
        assert_eq!(
            ok("https://s3.amazonaws.com/fw/v1/job.json"),
            pair("fw", "v1/job.json")
        );
        assert_eq!(
            ok("https://s3.eu-west-1.amazonaws.com/fw/job.json"),
            pair("fw", "job.json")
        );
        assert_eq!(
            ok("https://fw.s3.amazonaws.com/job.json"),
            pair("fw", "job.json")
        );
        assert_eq!(
            ok("https://fw.s3.us-east-1.amazonaws.com/a%20b.json"),
            pair("fw", "a b.json")
        );
        assert_eq!(ok("s3://fw/é/job.json"), pair("fw", "é/job.json"));
        for bad in [
            "",
            "fw/job.json",
            "http://s3.amazonaws.com/fw/job.json",
            "https://example.com/fw/job.json",
            "https://s3.amazonaws.com/fw",
            "https://s3.amazonaws.com/fw/../secret",
            "https://s3.amazonaws.com/fw/%2e%2e/secret",
            "https://s3.amazonaws.com/fw/a//b",
            "https://s3.amazonaws.com/fw/a%2",
            "https://s3.amazonaws.com/fw/a%ff",
            "https://s3.amazonaws.com/fw/a%é1",
            "s3://../job.json",
            "s3:///job.json",
            "https://s3.EU.amazonaws.com/fw/job.json",
        ] {
            assert!(bucket_and_key(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn documents_are_read_from_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("fw/v2")).unwrap();
        std::fs::write(dir.path().join("fw/v2/job.json"), r#"{"op":"update"}"#).unwrap();
        std::fs::write(
            dir.path().join("fw/big.json"),
            vec![b' '; MAX_DOCUMENT_BYTES + 1],
        )
        .unwrap();
        std::fs::write(dir.path().join("fw/binary"), [0xff, 0xfe]).unwrap();
        assert_eq!(
            read(dir.path(), "s3://fw/v2/job.json").await.unwrap(),
            r#"{"op":"update"}"#
        );
        for bad in [
            "s3://fw/v2/none.json",
            "s3://fw/v2",
            "s3://fw/big.json",
            "s3://fw/binary",
        ] {
            assert!(read(dir.path(), bad).await.is_err(), "{bad}");
        }
    }
}
