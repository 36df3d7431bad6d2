//! Webhook endpoint URLs: what a subscription may point at.
//!
//! This checks the URL as written. Refusing hostnames that *resolve* to
//! private addresses belongs to the connect-time SSRF guard (DESIGN.md,
//! Security), which must check every resolution, not just the first.

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::ApiError;

pub const MAX_ENDPOINT_LEN: usize = 2048;

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_endpoint", detail)
}

/// Parses and checks an endpoint; returns it normalised.
pub fn validate_endpoint(raw: &str, allow_private: bool) -> Result<Url, ApiError> {
    if raw.len() > MAX_ENDPOINT_LEN {
        return Err(invalid(format!(
            "endpoint is longer than {MAX_ENDPOINT_LEN} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|err| invalid(format!("endpoint is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("endpoint must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "endpoint must not carry credentials; use the signature to authenticate Herald",
        ));
    }
    let private = match url.host() {
        None => return Err(invalid("endpoint has no host")),
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            domain == "localhost" || domain.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
    };
    if private && !allow_private {
        return Err(ApiError::bad_request(
            "endpoint_not_allowed",
            "endpoint is a loopback, private or link-local address; \
             set security.allow_private_endpoints (or run with --dev) to allow it",
        ));
    }
    Ok(url)
}

/// Loopback, private, link-local, unspecified and cloud-metadata addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // Carrier-grade NAT, 100.64.0.0/10.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://[::ffff:192.168.0.1]/",
        ] {
            assert!(validate_endpoint(url, false).is_err(), "{url}");
            assert!(validate_endpoint(url, true).is_ok(), "{url}");
        }
        assert!(validate_endpoint("https://example.com/hook", false).is_ok());
    }

    #[test]
    fn refuses_malformed() {
        for url in ["", "nope", "ftp://example.com/", "http://u:p@example.com/"] {
            assert!(validate_endpoint(url, true).is_err(), "{url}");
        }
    }
}
