//! API errors as `metav1.Status` documents with the real server's codes,
//! reasons and wording, so clients branch on them as they would in a
//! cluster.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::registry::Resource;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status: which object, and for Invalid the causes.
    pub details: Option<Value>,
}

fn details(res: &Resource, name: &str) -> Value {
    json!({"name": name, "group": res.group, "kind": res.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(res: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(res, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", res.qualified_plural()),
            )
        }
    }

    /// For paths that name no served resource.
    pub fn no_such_path() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(res: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(res, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.qualified_plural()),
            )
        }
    }

    /// A write based on something other than the object as stored.
    pub fn conflict(res: &Resource, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(res, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    res.qualified_plural()
                ),
            )
        }
    }

    pub fn modified(res: &Resource, name: &str) -> ApiError {
        ApiError::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause, worded like apimachinery's field errors.
    pub fn invalid(res: &Resource, name: &str, field: &str, problem: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "group": res.group, "kind": res.kind,
                                 "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": field}]})),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {field}: {problem}", res.qualified_kind()),
            )
        }
    }

    /// 500, for a request that was fine but could not be carried out.
    pub fn internal(why: impl Into<String>) -> ApiError {
        let why = why.into();
        ApiError {
            details: Some(json!({"causes": [{"message": why}]})),
            ..ApiError::new(500, "InternalError", format!("Internal error occurred: {why}"))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(got: &str, accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({got:?}) - accepted media types include: {accepted}"
            ),
        )
    }

    /// The ERROR event of a watch that cannot resume.
    pub fn expired(asked: u64, oldest: u64) -> ApiError {
        ApiError::new(410, "Expired", format!("too old resource version: {asked} ({oldest})"))
    }

    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.body())).into_response()
    }
}
