//! Request routing: paths as the Kubernetes REST API lays them out.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::objects::{self, Part, PatchKind};
use crate::registry::{self, Resource};
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::Shared;
use crate::watch::{self, WatchRequest};

#[derive(Clone)]
pub struct AppState {
    pub store: Shared,
    pub server: String,
}

/// A parsed resource path.
struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, version: &str, segs: &[&str]) -> Option<Target> {
    let namespaced_path = segs.len() >= 3
        && segs[0] == "namespaces"
        && registry::find(group, version, segs[2]).is_some_and(|r| r.namespaced);
    let (namespace, rest) = if namespaced_path {
        (Some(segs[1].to_string()), &segs[2..])
    } else {
        (None, segs)
    };
    let res = registry::find(group, version, rest.first()?)?;
    if rest.len() > 3 {
        return None;
    }
    Some(Target {
        res,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

pub async fn handle(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let found = match segs.as_slice() {
        ["version"] => Some(Json(crate::discovery::version()).into_response()),
        ["healthz" | "readyz" | "livez"] => Some("ok".into_response()),
        ["api"] => Some(Json(crate::discovery::core_versions(&app.server)).into_response()),
        ["apis"] => Some(Json(crate::discovery::group_list()).into_response()),
        ["api", "v1"] => crate::discovery::resource_list("", "v1").map(|d| Json(d).into_response()),
        ["apis", g] => crate::discovery::group(g).map(|d| Json(d).into_response()),
        ["apis", g, v] => crate::discovery::resource_list(g, v).map(|d| Json(d).into_response()),
        ["openapi", "v3"] => Some(Json(crate::discovery::openapi_root()).into_response()),
        ["openapi", "v3", rest @ ..] => {
            crate::discovery::openapi_group_version(&rest.join("/")).map(|d| Json(d).into_response())
        }
        ["api", "v1", rest @ ..] => {
            Some(resource(&app, parse_target("", "v1", rest), method, &query, &headers, &body).await)
        }
        ["apis", g, v, rest @ ..] => {
            Some(resource(&app, parse_target(g, v, rest), method, &query, &headers, &body).await)
        }
        _ => None,
    };
    found.unwrap_or_else(|| {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response()
    })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn selectors(query: &HashMap<String, String>) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::labels(query.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = Selector::fields(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

fn part_of(sub: Option<&str>, res: &Resource) -> Result<Part, ApiError> {
    match sub {
        None => Ok(Part::Main),
        Some("status") if res.status => Ok(Part::Status),
        Some(other) => Err(ApiError::not_found(&format!("{}/{other}", res.plural), "")),
    }
}

async fn resource(
    app: &AppState,
    target: Option<Target>,
    method: Method,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(t) = target else {
        return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response();
    };
    match serve(app, t, method, query, headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    app: &AppState,
    t: Target,
    method: Method,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let res = t.res;
    if t.namespace.is_some() && !res.namespaced {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let ns = t.namespace.clone().unwrap_or_else(|| {
        if res.namespaced {
            "default".into()
        } else {
            String::new()
        }
    });
    let watch = matches!(query.get("watch").map(String::as_str), Some("1" | "true"));
    match (&method, t.name.as_deref()) {
        (&Method::GET, None) if watch => {
            let (labels, fields) = selectors(query)?;
            let req = WatchRequest {
                resource: res,
                namespace: t.namespace.clone(),
                labels,
                fields,
                resource_version: query.get("resourceVersion").and_then(|v| v.parse().ok()),
                bookmarks: matches!(query.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1")),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs),
            };
            let stream = watch::stream(app.store.clone(), req);
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .expect("static response parts"))
        }
        (&Method::GET, None) => {
            let (labels, fields) = selectors(query)?;
            let mut st = app.store.lock().expect("store lock");
            *st.lists.entry(res.plural).or_default() += 1;
            let items: Vec<&Value> = st
                .list(res, t.namespace.as_deref())
                .map(|o| o.as_ref())
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .collect();
            if wants_table(headers) {
                return Ok(Json(crate::table::table(res, &items, st.rv)).into_response());
            }
            Ok(Json(
                json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
            .into_response())
        }
        (&Method::GET, Some(name)) => {
            part_of(t.sub.as_deref(), res)?;
            let st = app.store.lock().expect("store lock");
            let obj = objects::get(&st, res, &ns, name)?;
            if wants_table(headers) {
                return Ok(Json(crate::table::table(res, &[obj.as_ref()], st.rv)).into_response());
            }
            Ok(Json(obj.as_ref().clone()).into_response())
        }
        (&Method::POST, None) => {
            let obj = parse_body(body)?;
            let created = objects::create(&mut app.store.lock().expect("store lock"), res, &ns, obj)?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (&Method::PUT, Some(name)) => {
            let part = part_of(t.sub.as_deref(), res)?;
            let obj = parse_body(body)?;
            let updated = objects::update(&mut app.store.lock().expect("store lock"), res, &ns, name, obj, part)?;
            Ok(Json(updated).into_response())
        }
        (&Method::PATCH, Some(name)) => {
            let part = part_of(t.sub.as_deref(), res)?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = match ct.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                other => return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"))),
            };
            let patch = parse_body(body)?;
            let updated = objects::patch(
                &mut app.store.lock().expect("store lock"),
                res,
                &ns,
                name,
                kind,
                &patch,
                part,
            )?;
            Ok(Json(updated).into_response())
        }
        (&Method::DELETE, Some(name)) => {
            if t.sub.is_some() {
                return Err(ApiError::new(405, "MethodNotAllowed", "subresources cannot be deleted"));
            }
            let gone = objects::delete(&mut app.store.lock().expect("store lock"), res, &ns, name)?;
            Ok(Json(gone).into_response())
        }
        (&Method::DELETE, None) => {
            let (labels, fields) = selectors(query)?;
            let mut st = app.store.lock().expect("store lock");
            let names: Vec<(String, String)> = st
                .list(res, t.namespace.as_deref())
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .map(|o| {
                    (
                        o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                        o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let items: Vec<Value> = names
                .iter()
                .map(|(ns, name)| objects::delete(&mut st, res, ns, name))
                .collect::<Result<_, _>>()?;
            Ok(Json(
                json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
            .into_response())
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on this path"),
        )),
    }
}
