//! What a runtime hands the plugin besides the verb: the per-plugin
//! network config and `CNI_ARGS`.

use serde_json::Value;

/// libcni turns a conflist into one plugin's config by copying the list's
/// `name` and `cniVersion` into it. Only the first plugin of a list is run
/// here. `runtimeConfig` is left out: this runtime passes no capability
/// arguments, so nothing in it would be true.
pub(crate) fn plugin_config(conf: &Value) -> Value {
    let mut one = match conf.get("plugins").and_then(Value::as_array).and_then(|p| p.first()) {
        Some(first) => {
            let mut c = first.clone();
            c["name"] = conf["name"].clone();
            c["cniVersion"] = conf["cniVersion"].clone();
            c
        }
        None => conf.clone(),
    };
    if let Some(map) = one.as_object_mut() {
        map.remove("runtimeConfig");
    }
    one
}

/// The pod a sandbox is for, as runtimes name it in `CNI_ARGS`.
pub(crate) struct PodIdentity<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// `CNI_ARGS` as containerd and cri-o set it for a pod sandbox.
pub(crate) fn cni_args(pod: &PodIdentity<'_>, container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.uid
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflist_first_plugin_gets_name_and_version() {
        let conf = json!({"cniVersion":"1.1.0","name":"netlet",
            "plugins":[{"type":"netlet","mtu":1400,"runtimeConfig":{"portMappings":[]}},{"type":"portmap"}]});
        assert_eq!(
            plugin_config(&conf),
            json!({"type":"netlet","mtu":1400,"name":"netlet","cniVersion":"1.1.0"})
        );
    }

    #[test]
    fn a_single_config_passes_through_without_runtime_config() {
        let single = json!({"cniVersion":"1.0.0","name":"x","type":"bridge"});
        assert_eq!(plugin_config(&single), single);
        let mut with_rt = single.clone();
        with_rt["runtimeConfig"] = json!({"bandwidth":{}});
        assert_eq!(plugin_config(&with_rt), single);
    }

    #[test]
    fn cni_args_name_the_pod() {
        let pod = PodIdentity {
            namespace: "demo",
            name: "web-1",
            uid: "u-1",
        };
        assert_eq!(
            cni_args(&pod, "sandbox-u-1"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=sandbox-u-1;K8S_POD_UID=u-1"
        );
    }
}
