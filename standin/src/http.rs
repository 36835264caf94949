//! Request routing: paths, verbs, query parameters and content types as
//! the Kubernetes REST API lays them out.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::discovery;
use crate::objects::{self, Part, PatchKind, Written};
use crate::registry::{self, Resource};
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{Shared, State as Store};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchRequest};

#[derive(Clone)]
pub struct AppState {
    pub store: Shared,
    /// host:port, as discovery reports it.
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

/// The parts of a request a resource handler reads.
struct Request<'a> {
    method: Method,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE).split(';').next().unwrap_or("").trim()
    }

    /// The Table flavour asked for, if kubectl wants a printable answer.
    fn table(&self) -> Result<Option<IncludeObject>, ApiError> {
        if !self.header(header::ACCEPT).contains("as=Table") {
            return Ok(None);
        }
        IncludeObject::parse(self.param("includeObject"))
            .map(Some)
            .map_err(ApiError::bad_request)
    }

    fn selectors(&self) -> Result<(Selector, Selector), ApiError> {
        let labels = Selector::labels(self.param("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
        let fields = Selector::fields(self.param("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.param("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("dryRun must be \"All\", not {other:?}"))),
        }
    }

    /// The body of a create or update: JSON, or YAML as the real server
    /// also accepts. Protobuf is not spoken.
    fn object(&self) -> Result<Value, ApiError> {
        match self.content_type() {
            "" | "application/json" => parse_json(self.body),
            "application/yaml" => parse_yaml(self.body),
            other => Err(ApiError::unsupported_media_type(
                other,
                "application/json, application/yaml",
            )),
        }
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn parse_yaml(body: &Bytes) -> Result<Value, ApiError> {
    serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

fn json_with(code: StatusCode, v: Value) -> Response {
    (code, Json(v)).into_response()
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
    let req = Request {
        method: method.clone(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let resp = route(&app, &segs, req).unwrap_or_else(|e| e.into_response());
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "API stand-in request");
    resp
}

fn route(app: &AppState, segs: &[&str], req: Request<'_>) -> Result<Response, ApiError> {
    let read_only = req.method == Method::GET;
    let doc = |d: Option<Value>| d.map(|d| Json(d).into_response()).ok_or_else(ApiError::no_such_path);
    // Discovery answers are always the classic JSON documents; a client
    // asking for aggregated discovery sees application/json and falls back.
    match segs {
        ["version"] if read_only => doc(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] if read_only => Ok("ok".into_response()),
        ["api"] if read_only => doc(Some(discovery::core_versions(&app.server))),
        ["apis"] if read_only => doc(Some(discovery::group_list())),
        ["api", "v1"] if read_only => doc(discovery::resource_list("", "v1")),
        ["apis", g] if read_only => doc(discovery::group(g)),
        ["apis", g, v] if read_only => doc(discovery::resource_list(g, v)),
        ["openapi", "v2"] if read_only => {
            let (ct, bytes) = discovery::openapi_v2(req.header(header::ACCEPT));
            Ok(([(header::CONTENT_TYPE, ct)], bytes).into_response())
        }
        ["api", "v1", rest @ ..] => {
            let t = parse_target("", "v1", rest).ok_or_else(ApiError::no_such_path)?;
            serve(app, t, req)
        }
        ["apis", g, v, rest @ ..] => {
            let t = parse_target(g, v, rest).ok_or_else(ApiError::no_such_path)?;
            serve(app, t, req)
        }
        _ => Err(ApiError::no_such_path()),
    }
}

fn part_of(sub: Option<&str>, res: &Resource) -> Result<Part, ApiError> {
    match sub {
        None => Ok(Part::Main),
        Some("status") if res.status => Ok(Part::Status),
        Some(_) => Err(ApiError::no_such_path()),
    }
}

fn patch_kind(req: &Request<'_>) -> Result<PatchKind, ApiError> {
    match req.content_type() {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" => {
            if req.param("fieldManager").is_none() {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            Ok(PatchKind::Apply)
        }
        other => Err(ApiError::unsupported_media_type(
            other,
            "application/json-patch+json, application/merge-patch+json, \
             application/strategic-merge-patch+json, application/apply-patch+yaml",
        )),
    }
}

/// Runs a write against the store, or against a copy of it for
/// `dryRun=All`.
fn write<T>(app: &AppState, dry_run: bool, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
    let mut st = crate::store::lock(&app.store);
    if dry_run {
        f(&mut st.dry_run_copy())
    } else {
        f(&mut st)
    }
}

fn written(w: Written) -> Response {
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    json_with(code, w.object)
}

fn list_doc(res: &Resource, rv: u64, items: Vec<Value>) -> Value {
    json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
           "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn serve(app: &AppState, t: Target, req: Request<'_>) -> Result<Response, ApiError> {
    let res = t.res;
    if t.namespace.is_some() && !res.namespaced {
        return Err(ApiError::no_such_path());
    }
    // A namespaced kind outside /namespaces/{ns}/ is only listed and watched.
    if res.namespaced && t.namespace.is_none() && (t.name.is_some() || req.method != Method::GET) {
        return Err(if t.name.is_some() {
            ApiError::no_such_path()
        } else {
            ApiError::method_not_allowed()
        });
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let dry_run = req.dry_run()?;
    match (&req.method, t.name.as_deref()) {
        (&Method::GET, None) if req.flag("watch") => watch(app, &t, &req),
        (&Method::GET, None) => {
            let (labels, fields) = req.selectors()?;
            let table = req.table()?;
            let mut st = crate::store::lock(&app.store);
            *st.lists.entry(res.plural).or_default() += 1;
            let items: Vec<&Value> = st
                .list(res, t.namespace.as_deref())
                .map(|o| o.as_ref())
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .collect();
            // `limit` is not honoured: one page with everything and no
            // `continue` is a valid answer to any limit.
            Ok(Json(match table {
                Some(include) => table::table(res, &items, st.rv, include),
                None => list_doc(res, st.rv, items.into_iter().cloned().collect()),
            })
            .into_response())
        }
        (&Method::GET, Some(name)) => {
            part_of(t.sub.as_deref(), res)?;
            let table = req.table()?;
            let st = crate::store::lock(&app.store);
            let obj = objects::get(&st, res, &ns, name)?;
            Ok(Json(match table {
                Some(include) => table::table(res, &[obj.as_ref()], st.rv, include),
                None => obj.as_ref().clone(),
            })
            .into_response())
        }
        (&Method::POST, None) => {
            let obj = req.object()?;
            let created = write(app, dry_run, |st| objects::create(st, res, &ns, obj))?;
            Ok(json_with(StatusCode::CREATED, created))
        }
        (&Method::POST, Some(name)) if t.sub.as_deref() == Some("binding") && res.kind == "Pod" => {
            let binding = req.object()?;
            let status = write(app, dry_run, |st| objects::bind(st, res, &ns, name, &binding))?;
            Ok(json_with(StatusCode::CREATED, status))
        }
        (&Method::PUT, Some(name)) => {
            let part = part_of(t.sub.as_deref(), res)?;
            let obj = req.object()?;
            write(app, dry_run, |st| objects::update(st, res, &ns, name, obj, part)).map(written)
        }
        (&Method::PATCH, Some(name)) => {
            let part = part_of(t.sub.as_deref(), res)?;
            let kind = patch_kind(&req)?;
            let patch = match kind {
                // Apply configurations are YAML (kube-rs sends JSON, which is YAML too).
                PatchKind::Apply => parse_json(req.body).or_else(|_| parse_yaml(req.body))?,
                _ => parse_json(req.body)?,
            };
            write(app, dry_run, |st| {
                objects::patch(st, res, &ns, name, kind, &patch, part)
            })
            .map(written)
        }
        (&Method::DELETE, Some(name)) => {
            if t.sub.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let options = delete_options(&req)?;
            let gone = write(app, dry_run, |st| objects::delete(st, res, &ns, name, &options))?;
            Ok(Json(gone).into_response())
        }
        (&Method::DELETE, None) => {
            let (labels, fields) = req.selectors()?;
            let options = delete_options(&req)?;
            let (items, rv) = write(app, dry_run, |st| {
                let keys: Vec<(String, String)> = st
                    .list(res, t.namespace.as_deref())
                    .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                    .map(|o| {
                        let m = &o["metadata"];
                        (
                            m["namespace"].as_str().unwrap_or("").to_string(),
                            m["name"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                let items = keys
                    .iter()
                    .map(|(ns, name)| objects::delete(st, res, ns, name, &options))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((items, st.rv))
            })?;
            Ok(Json(list_doc(res, rv, items)).into_response())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// DeleteOptions come in the body (kubectl, kube-rs); an empty body is none.
fn delete_options(req: &Request<'_>) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        parse_json(req.body)
    }
}

fn watch(app: &AppState, t: &Target, req: &Request<'_>) -> Result<Response, ApiError> {
    let (labels, fields) = req.selectors()?;
    let resource_version = match req.param("resourceVersion") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?,
        ),
    };
    let timeout = match req.param("timeoutSeconds") {
        None => None,
        Some(v) => Some(Duration::from_secs(v.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds must be a whole number of seconds, not {v:?}"))
        })?)),
    };
    let w = WatchRequest {
        resource: t.res,
        namespace: t.namespace.clone(),
        labels,
        fields,
        resource_version,
        bookmarks: req.flag("allowWatchBookmarks"),
        send_initial_events: req.flag("sendInitialEvents"),
        timeout,
        table: req.table()?,
    };
    let stream = watch::stream(app.store.clone(), w);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts"))
}
