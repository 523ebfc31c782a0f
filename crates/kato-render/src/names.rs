//! The names a component's objects get on the engines, chosen so that no two components — of
//! two teams, or of one team — can share one.
//!
//! Team, component and plug-in names are DNS-1123 labels: `-` may appear anywhere inside them,
//! `--` too, so joining two of them with `-` is ambiguous (team `a` / component `b-c` and team
//! `a-b` / component `c` both give `a-b-c`). So:
//!
//! - A Secret in the team's namespace is `{component}.plugin-{plugin}`: a DNS subdomain whose
//!   first label is the component (labels hold no `.`), so the pair can be read back from it.
//! - A podman pod, whose name is global on the machine and a DNS label on podman's network, is
//!   `{team}-{hash}-{component}`: the team (its first 24 characters), 16 hex digits of the
//!   SHA-256 of `{team}/{component}`, then the component (shortened to fit 63 characters). Two
//!   components share a pod name only if SHA-256 collides on 64 bits; and since the hash sits
//!   right after the team, a container `{pod}-{container}` (how podman names them) of one pod
//!   cannot read as another pod's either.
//! - A podman secret (at most 64 characters there) is `{hash}_{secret hash}`: the pod's hash,
//!   then 32 hex digits of the SHA-256 of the Secret's name; it carries the Secret's name in
//!   its `kato/secret` label.
//! - Other pods reach a component at `{component}.{team}`: a DNS alias on podman's network, and
//!   the component's Service in the team's namespace on Kubernetes.

use sha2::{Digest, Sha256};

use crate::text::concat;

/// How many characters of the team a pod name keeps.
const POD_TEAM_CHARS: usize = 24;
/// Hex digits of the hash in a pod name (64 bits).
const POD_HASH_CHARS: usize = 16;
/// A pod name is its pod's hostname and DNS name: one DNS label.
const POD_NAME_MAX: usize = 63;

/// The Secret holding a plug-in installation's secret values: `{component}.plugin-{plugin}`.
pub fn plugin_secret_name(component: &str, plugin: &str) -> String {
    concat(&[component, ".plugin-", plugin])
}

/// 16 hex digits of the SHA-256 of `{team}/{component}`: what tells a component's podman
/// objects from every other's.
pub fn component_hash(team: &str, component: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(team.as_bytes());
    digest.update(b"/");
    digest.update(component.as_bytes());
    hex::encode(&digest.finalize()[..POD_HASH_CHARS / 2])
}

/// The podman pod of a component: `{team}-{hash}-{component}`, at most 63 characters (see the
/// module's documentation).
pub fn podman_pod_name(team: &str, component: &str) -> String {
    let hash = component_hash(team, component);
    let team = shortened(team, POD_TEAM_CHARS);
    let room = POD_NAME_MAX - team.len() - POD_HASH_CHARS - 2;
    concat(&[team, "-", &hash, "-", shortened(component, room)])
}

/// The podman secret holding the component's Secret `secret`: `{hash}_{secret hash}`, 49
/// characters (podman allows 64).
pub fn podman_secret_name(team: &str, component: &str, secret: &str) -> String {
    let name = hex::encode(&Sha256::digest(secret.as_bytes())[..16]);
    concat(&[&component_hash(team, component), "_", &name])
}

/// The host name other pods reach a component at: `{component}.{team}`, on both targets.
pub fn component_host(team: &str, component: &str) -> String {
    concat(&[component, ".", team])
}

/// The first `max` characters of a DNS label, ending with a letter or digit. Labels start with a
/// letter, so the result is never empty.
fn shortened(label: &str, max: usize) -> &str {
    label[..label.len().min(max)].trim_end_matches('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        s.parse::<kato_model::TeamName>().is_ok()
    }

    #[test]
    fn the_colliding_pairs_of_the_old_scheme_get_different_names() {
        // `{team}-{component}` gave `a-b-c` for both.
        assert_ne!(podman_pod_name("a", "b-c"), podman_pod_name("a-b", "c"));
        assert_ne!(podman_pod_name("a", "b--c"), podman_pod_name("a--b", "c"));
        // `{component}-plugin-{plugin}` gave `x-plugin-y-plugin-z` for both.
        assert_ne!(
            plugin_secret_name("x", "y-plugin-z"),
            plugin_secret_name("x-plugin-y", "z")
        );
        assert_ne!(component_host("a", "b-c"), component_host("a-b", "c"));
        assert_ne!(podman_secret_name("a", "b-c", "s"), podman_secret_name("a-b", "c", "s"));
    }

    #[test]
    fn pod_names_are_stable_readable_dns_labels() {
        let name = podman_pod_name("shop", "web");
        assert_eq!(name, podman_pod_name("shop", "web"));
        assert!(name.starts_with("shop-") && name.ends_with("-web"), "{name}");
        assert_eq!(name.len(), "shop".len() + "web".len() + POD_HASH_CHARS + 2);
        let long = "a".repeat(30) + "-" + &"b".repeat(32);
        for (team, component) in [
            ("a", "b"),
            (long.as_str(), long.as_str()),
            ("abcdefghijklmnopqrstuvw-x", "y"),
            ("t", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq-r"),
        ] {
            let name = podman_pod_name(team, component);
            assert!(is_dns_label(&name), "{name} ({} chars)", name.len());
        }
        // Shortened names still differ by the hash of the whole pair.
        assert_ne!(
            podman_pod_name(&long, &(long.clone() + "x")),
            podman_pod_name(&long, &long)
        );
    }

    #[test]
    fn containers_of_one_pod_never_read_as_another_pods() {
        // podman names a pod's containers `{pod}-{container}`; with the hash right after the
        // team, no pod name of a team followed by `-` starts another pod name of that team.
        let comps = ["x", "x-plugin-y", "x-plugin", "b-c", "c", "b"];
        for a in comps {
            for b in comps {
                let (pa, pb) = (podman_pod_name("t", a), podman_pod_name("t", b));
                assert!(a == b || !pb.starts_with(&(pa.clone() + "-")), "{pa} / {pb}");
            }
        }
    }

    #[test]
    fn secret_names_are_dns_subdomains() {
        let name = plugin_secret_name(&"c".repeat(63), &"p".repeat(56));
        for label in name.split('.') {
            assert!(is_dns_label(label), "{label}");
        }
        assert_eq!(plugin_secret_name("web", "logtail"), "web.plugin-logtail");
        let podman = podman_secret_name(&"t".repeat(63), &"c".repeat(63), &name);
        assert_eq!(podman.len(), 49);
        assert!(podman.starts_with(&(component_hash(&"t".repeat(63), &"c".repeat(63)) + "_")));
    }
}
