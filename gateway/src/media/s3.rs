//! The cluster engine: media in an S3-compatible bucket, so any node serves any upload.
//! `object_store` signs and retries the requests (SigV4); they travel on hyper (rustls with
//! the ring provider and the webpki roots), the HTTP stack the gateway already has, instead
//! of the second one (reqwest, aws-lc-rs) that `object_store`'s own client would bring.

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

use super::store::{Listed, MediaStore, valid_key, valid_prefix};

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub(crate) struct S3Config {
    pub(crate) bucket: String,
    /// `http(s)://host:port` of an S3-compatible server; None: AWS.
    pub(crate) endpoint: Option<String>,
    pub(crate) region: String,
    /// Keys go under this prefix in the bucket ("" = at its root).
    pub(crate) prefix: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    /// One request, connection and body included.
    pub(crate) request_timeout: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Media in a bucket.
pub(crate) struct S3Store {
    bucket: AmazonS3,
    prefix: String,
}

impl S3Store {
    pub(crate) fn open(config: &S3Config) -> io::Result<Self> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_http_connector(Hyper {
                timeout: config.request_timeout,
            })
            // A node gives up on a store within a few seconds rather than holding an upload
            // or a reader for minutes (object_store's default is 10 retries over 3 minutes).
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: config.request_timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // Servers other than AWS name the bucket in the path, not the host.
                .with_virtual_hosted_style_request(false);
        }
        let bucket = b.build().map_err(io::Error::other)?;
        let prefix = config.prefix.trim_matches('/');
        if !prefix.is_empty() && !valid_key(prefix) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid S3 key prefix {prefix:?}"),
            ));
        }
        Ok(Self {
            bucket,
            prefix: prefix.to_owned(),
        })
    }

    fn path(&self, key: &str) -> io::Result<Path> {
        if !valid_key(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid media key {key:?}"),
            ));
        }
        Ok(match self.prefix.is_empty() {
            true => Path::from(key),
            false => Path::from(format!("{}/{key}", self.prefix)),
        })
    }

    /// Whether `path` exists, and its length.
    async fn size(&self, path: &Path) -> io::Result<Option<u64>> {
        match self.bucket.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

#[async_trait]
impl MediaStore for S3Store {
    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        // One PUT: the object appears whole or not at all.
        let path = self.path(key)?;
        self.bucket
            .put(&path, bytes.into())
            .await
            .map(drop)
            .map_err(io::Error::other)
    }

    async fn read(&self, key: &str, range: Range<u64>) -> io::Result<Option<Bytes>> {
        let path = self.path(key)?;
        let wanted = match (range.start, range.end) {
            (0, u64::MAX) => None,
            (start, u64::MAX) => Some(GetRange::Offset(start)),
            (start, end) if start < end => Some(GetRange::Bounded(start..end)),
            // Nothing asked for: only whether the key exists.
            _ => return Ok(self.size(&path).await?.map(|_| Bytes::new())),
        };
        let options = GetOptions {
            range: wanted,
            ..GetOptions::default()
        };
        let err = match self.bucket.get_opts(&path, options).await {
            Ok(got) => return got.bytes().await.map(Some).map_err(io::Error::other),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => e,
        };
        // A range that starts past the end is refused (416); the store's contract is an
        // empty read of an existing key.
        match self.size(&path).await? {
            None => Ok(None),
            Some(len) if range.start >= len => Ok(Some(Bytes::new())),
            Some(_) => Err(io::Error::other(err)),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        match self.bucket.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<Listed>> {
        use futures_util::TryStreamExt;
        if !valid_prefix(prefix) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid media key prefix {prefix:?}"),
            ));
        }
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let strip = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        let objects: Vec<_> = self
            .bucket
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(io::Error::other)?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let key = o.location.as_ref().strip_prefix(&strip)?.to_owned();
                valid_key(&key).then(|| Listed {
                    key,
                    modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }
}

/// `object_store`'s requests on hyper. Each response body is read whole inside the
/// deadline (the store asks for one rendition or record at a time, whose size it knows).
#[derive(Debug, Clone)]
struct Hyper {
    timeout: Duration,
}

impl HttpConnector for Hyper {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::outbound::client(
            "S3",
            crate::outbound::Version::Http1,
            self.timeout,
            Duration::from_secs(30),
        )
        .map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: e.into(),
        })?;
        Ok(HttpClient::new(HyperService {
            client,
            timeout: self.timeout,
        }))
    }
}

struct HyperService {
    client: Client<crate::outbound::Connector, HttpRequestBody>,
    timeout: Duration,
}

impl fmt::Debug for HyperService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperService")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| {
                let kind = match e.is_connect() {
                    true => HttpErrorKind::Connect,
                    false => HttpErrorKind::Request,
                };
                HttpError::new(kind, e)
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))?
                .to_bytes();
            Ok(HttpResponse::from_parts(
                parts,
                HttpResponseBody::from(body),
            ))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::store::conformance;
    use parley_testsupport::S3Server;

    fn config(server: &S3Server, prefix: &str, secret: &str) -> S3Config {
        S3Config {
            bucket: S3Server::BUCKET.into(),
            endpoint: Some(server.endpoint()),
            region: "us-east-1".into(),
            prefix: prefix.into(),
            access_key_id: S3Server::ACCESS_KEY_ID.into(),
            secret_access_key: secret.into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn the_s3_engine_conforms() {
        let server = S3Server::start();
        let store = S3Store::open(&config(&server, "", S3Server::SECRET_ACCESS_KEY)).unwrap();
        conformance::run(&store).await;
        let prefixed =
            S3Store::open(&config(&server, "/parley/", S3Server::SECRET_ACCESS_KEY)).unwrap();
        prefixed
            .put("records/r1", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(server.objects(), ["parley/records/r1"]);
        let read = prefixed.read("records/r1", 0..u64::MAX).await.unwrap();
        assert_eq!(read.as_deref(), Some(&b"{}"[..]));
        assert_eq!(store.read("records/r1", 0..10).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_server_refuses_requests_signed_with_the_wrong_secret() {
        let server = S3Server::start();
        let wrong = S3Store::open(&config(&server, "", "not-the-secret-at-all")).unwrap();
        assert!(
            wrong
                .put("blobs/x", Bytes::from_static(b"x"))
                .await
                .is_err()
        );
        assert!(server.objects().is_empty());
        let right = S3Store::open(&config(&server, "", S3Server::SECRET_ACCESS_KEY)).unwrap();
        right
            .put("blobs/x", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert!(wrong.read("blobs/x", 0..u64::MAX).await.is_err());
    }

    #[tokio::test]
    async fn a_dead_server_is_an_error_not_a_hang() {
        let server = S3Server::start();
        let store = S3Store::open(&config(&server, "", S3Server::SECRET_ACCESS_KEY)).unwrap();
        store
            .put("blobs/y", Bytes::from_static(b"y"))
            .await
            .unwrap();
        server.stop();
        // The store's own deadline ends each call; the outer one only catches a hang.
        let limit = Duration::from_secs(60);
        let put = tokio::time::timeout(limit, store.put("blobs/z", Bytes::from_static(b"z")));
        assert!(put.await.expect("put hung").is_err());
        let read = tokio::time::timeout(limit, store.read("blobs/y", 0..u64::MAX));
        assert!(read.await.expect("read hung").is_err());
        server.restart();
        let back = store.read("blobs/y", 0..u64::MAX).await.unwrap();
        assert_eq!(back.as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn a_bad_prefix_is_refused() {
        let c = S3Config {
            bucket: "media".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-east-1".into(),
            prefix: "../up".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            request_timeout: Duration::from_secs(1),
        };
        assert!(S3Store::open(&c).is_err());
    }
}
