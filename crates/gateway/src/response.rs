//! Errors as Binance shapes them: `{"code": N, "msg": "…"}` with Binance's status codes.
//! Messages are fixed or built from names and rules, never from secrets.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use keygate_exchanges::Error as ParseError;

/// One error answer.
pub struct BinanceError {
    status: StatusCode,
    code: i32,
    msg: String,
}

impl BinanceError {
    fn new(status: StatusCode, code: i32, msg: impl Into<String>) -> BinanceError {
        BinanceError {
            status,
            code,
            msg: msg.into(),
        }
    }

    /// -2015 with 401, as Binance answers "Invalid API-key, IP, or permissions for action".
    pub fn rejected(msg: &str) -> BinanceError {
        BinanceError::new(StatusCode::UNAUTHORIZED, -2015, msg)
    }

    /// -2014: no usable API key header.
    pub fn bad_key_format() -> BinanceError {
        BinanceError::new(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.")
    }

    /// -1000 with 404: keygate routes nothing here.
    pub fn not_found() -> BinanceError {
        BinanceError::new(StatusCode::NOT_FOUND, -1000, "keygate: unknown endpoint")
    }

    /// -1100 with 400.
    pub fn malformed(msg: &str) -> BinanceError {
        BinanceError::new(StatusCode::BAD_REQUEST, -1100, format!("keygate: {msg}"))
    }

    /// 413: the body is larger than any Binance request.
    pub fn too_large() -> BinanceError {
        BinanceError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            -1100,
            "keygate: request body too large",
        )
    }

    /// 503: the audit log cannot be written, so nothing was forwarded.
    pub fn audit_unavailable() -> BinanceError {
        BinanceError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            -1001,
            "keygate: audit log unavailable; request not forwarded",
        )
    }

    /// 504: the exchange did not answer in time; the request may have executed.
    pub fn timeout() -> BinanceError {
        BinanceError::new(
            StatusCode::GATEWAY_TIMEOUT,
            -1007,
            "keygate: timeout waiting for the exchange; the outcome is unknown and the request was not retried",
        )
    }

    /// 502: the exchange could not be reached; nothing was sent.
    pub fn bad_gateway() -> BinanceError {
        BinanceError::new(
            StatusCode::BAD_GATEWAY,
            -1001,
            "keygate: exchange unreachable; request not sent",
        )
    }

    /// 500 with a generic message; the detail goes to the log.
    pub fn internal() -> BinanceError {
        BinanceError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1001,
            "keygate: internal error",
        )
    }

    /// The Binance error for a request that did not parse or verify.
    pub fn from_parse(e: &ParseError) -> BinanceError {
        match e {
            ParseError::DuplicateParameter { .. } => BinanceError::new(
                StatusCode::BAD_REQUEST,
                -1101,
                "Duplicate values for a parameter detected.",
            ),
            ParseError::MissingParameter { name } => BinanceError::new(
                StatusCode::BAD_REQUEST,
                -1102,
                format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
            ),
            ParseError::BadSignature => BinanceError::new(
                StatusCode::BAD_REQUEST,
                -1022,
                "Signature for this request is not valid.",
            ),
            ParseError::StaleTimestamp => BinanceError::new(
                StatusCode::BAD_REQUEST,
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            ),
            ParseError::RecvWindowTooLarge => BinanceError::new(
                StatusCode::BAD_REQUEST,
                -1131,
                "recvWindow must be less than 60000",
            ),
            ParseError::Malformed { reason } => BinanceError::malformed(reason),
            _ => BinanceError::malformed("request not understood"),
        }
    }
}

impl IntoResponse for BinanceError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "msg": self.msg });
        (self.status, axum::Json(body)).into_response()
    }
}
