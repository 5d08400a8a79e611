//! The catalog served gzip-compressed to a platform that accepts it (Kubernetes Service Catalog's
//! Go client asks for gzip by default): the same catalog, an ETag of its own, both ETags
//! revalidating, and the identity body for a platform that does not accept gzip.

use std::io::Read;

use crate::support::fake_broker::FakeBroker;
use crate::support::small_catalog::{gateway_for, small_catalog};

#[tokio::test]
async fn the_catalog_is_gzip_for_a_platform_that_accepts_it() {
    let broker = FakeBroker::with_catalog(small_catalog()).await;
    let (gw, _) = gateway_for(&broker).await;
    let get = |encoding: Option<&str>, if_none_match: Option<&str>| {
        let mut request = gw.osb().request(reqwest::Method::GET, "/v2/catalog");
        if let Some(encoding) = encoding {
            request = request.header("Accept-Encoding", encoding);
        }
        if let Some(tag) = if_none_match {
            request = request.header("If-None-Match", tag);
        }
        request.send()
    };

    let plain = get(None, None).await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain_etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain_body = plain.bytes().await.unwrap();

    let gzip = get(Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), None).await.unwrap();
    assert_eq!(gzip.status(), 200);
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    assert_eq!(gzip.headers()["vary"], "Accept-Encoding");
    let gzip_etag = gzip.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(
        gzip_etag, plain_etag,
        "a different representation, a different strong ETag"
    );
    let compressed = gzip.bytes().await.unwrap();
    assert!(compressed.len() < plain_body.len());
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_ref())
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, plain_body, "the same catalog");

    // Either ETag revalidates, whichever encoding is asked for.
    for (encoding, tag) in [
        (Some("gzip"), &gzip_etag),
        (Some("gzip"), &plain_etag),
        (None, &gzip_etag),
        (None, &plain_etag),
    ] {
        let response = get(encoding, Some(tag)).await.unwrap();
        assert_eq!(response.status(), 304, "{encoding:?} {tag}");
        assert!(response.bytes().await.unwrap().is_empty());
    }
    // gzip refused (q=0), or not offered: the identity body.
    for encoding in ["gzip;q=0", "identity", "deflate"] {
        let response = get(Some(encoding), None).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "{encoding}");
        assert_eq!(response.bytes().await.unwrap(), plain_body, "{encoding}");
    }
}
