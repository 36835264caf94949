//! Applying manifests: every document of every YAML file in a directory,
//! created through the API like `kubectl create -f DIR` would, in file-name
//! order so namespaces come before what lives in them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use serde::Deserialize;

/// One applied object, as later checks look for it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub object: DynamicObject,
}

pub fn manifest_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the example manifests in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .yaml manifests in {}", dir.display());
    }
    Ok(files)
}

/// Parses every YAML document of `text` into an object.
pub fn parse_documents(text: &str, origin: &Path) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(doc).with_context(|| format!("{} document {}", origin.display(), i + 1))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value)
            .with_context(|| format!("{} document {} is not a Kubernetes object", origin.display(), i + 1))?;
        if obj.types.is_none() {
            bail!("{} document {} has no apiVersion/kind", origin.display(), i + 1);
        }
        objects.push(obj);
    }
    Ok(objects)
}

/// Creates every object of the manifests in `dir`.
pub async fn apply_dir(client: &kube::Client, dir: &Path) -> anyhow::Result<Vec<Applied>> {
    let mut applied = Vec::new();
    for file in manifest_files(dir)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for obj in parse_documents(&text, &file)? {
            applied.push(
                create(client, obj)
                    .await
                    .with_context(|| format!("applying {}", file.display()))?,
            );
        }
    }
    Ok(applied)
}

async fn create(client: &kube::Client, obj: DynamicObject) -> anyhow::Result<Applied> {
    let types = obj.types.clone().expect("checked when parsed");
    let gvk = GroupVersionKind::try_from(&types).with_context(|| format!("bad apiVersion {:?}", types.api_version))?;
    let (resource, caps) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the API server does not serve {}", types.kind))?;
    let name = obj.metadata.name.clone().context("an object without metadata.name")?;
    let namespace = match caps.scope {
        Scope::Namespaced => Some(obj.metadata.namespace.clone().unwrap_or_else(|| "default".to_string())),
        Scope::Cluster => None,
    };
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("cannot create {} {name}", types.kind))?;
    Ok(Applied {
        kind: types.kind,
        namespace,
        name,
        object: created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        let mut kinds = Vec::new();
        for file in manifest_files(&dir).unwrap() {
            let text = std::fs::read_to_string(&file).unwrap();
            kinds.extend(
                parse_documents(&text, &file)
                    .unwrap()
                    .into_iter()
                    .map(|o| o.types.unwrap().kind),
            );
        }
        assert!(
            kinds.contains(&"Namespace".to_string()) && kinds.contains(&"Pod".to_string()),
            "{kinds:?}"
        );
        assert_eq!(kinds[0], "Namespace", "namespaces are applied first");
    }

    #[test]
    fn a_document_without_kind_is_refused() {
        let err = parse_documents("metadata: {name: x}\n", Path::new("x.yaml")).unwrap_err();
        assert!(format!("{err:#}").contains("x.yaml document 1"), "{err:#}");
    }
}
