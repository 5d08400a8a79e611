//! OSB header names, in one place for the gateway and the upstream client.

/// `X-Broker-API-Version`: on every request, both directions.
pub const API_VERSION: &str = "X-Broker-API-Version";
/// `X-Broker-API-Originating-Identity`: the platform user; forwarded unchanged, never logged decoded.
pub const ORIGINATING_IDENTITY: &str = "X-Broker-API-Originating-Identity";
/// `X-Broker-API-Request-Identity`: correlates one call across platform, gateway and upstream.
pub const REQUEST_IDENTITY: &str = "X-Broker-API-Request-Identity";
/// [`REQUEST_IDENTITY`] in the lower case `HeaderName::from_static` requires.
pub const REQUEST_IDENTITY_LOWER: &str = "x-broker-api-request-identity";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
