//! Workloads that cannot be rendered: each error names the component, the plug-in and the fix.

mod common;

use common::render;
use common::{Fixture, options};
use kato_model::VersionStatus;
use kato_render::{RenderError, SidecarMode, Target};

fn render_err(f: &Fixture) -> RenderError {
    render(&f.workload(), &options(Target::Kubernetes, SidecarMode::Native)).unwrap_err()
}

#[test]
fn a_succeeded_version_without_image_is_refused() {
    let mut f = Fixture::load("general");
    f.plugins[0].version.image = None;
    let e = render_err(&f);
    assert_eq!(
        e,
        RenderError::MissingImage {
            component: "web".into(),
            plugin: "exporter".into(),
            version: 5
        }
    );
    assert!(e.to_string().contains("build a new version of the plug-in"), "{e}");
}

#[test]
fn versions_that_did_not_succeed_are_skipped() {
    for status in [VersionStatus::Queued, VersionStatus::Building, VersionStatus::Failed] {
        let mut f = Fixture::load("general");
        f.plugins[0].version.status = status;
        f.plugins[0].version.image = None;
        let r = render(&f.workload(), &options(Target::Kubernetes, SidecarMode::Native)).unwrap();
        assert_eq!(r.objects.len(), 2, "{status:?}: only the Service and the Deployment");
    }
}

#[test]
fn a_version_of_another_plugin_or_number_is_refused() {
    let mut f = Fixture::load("general");
    f.plugins[0].version.number = 6;
    let e = render_err(&f);
    assert!(
        matches!(
            e,
            RenderError::VersionMismatch {
                pinned: 5,
                given: 6,
                ..
            }
        ),
        "{e:?}"
    );

    let mut f = Fixture::load("general");
    f.plugins[0].installation.plugin = "other".parse().unwrap();
    let e = render_err(&f);
    assert!(matches!(e, RenderError::PluginMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("`other`"), "{e}");
}

#[test]
fn a_plugin_installed_twice_is_refused() {
    let text = std::fs::read_to_string(format!("{}/general.yaml", common::FIXTURES)).unwrap();
    let mut f = Fixture::parse(&text);
    let again = Fixture::parse(&text).plugins.remove(0);
    f.plugins.push(again);
    let e = render_err(&f);
    assert_eq!(
        e.to_string(),
        "plug-in `exporter` is installed twice on component `web`: keep one installation"
    );
}

#[test]
fn the_longest_plugin_name_still_makes_a_valid_container_name() {
    let longest = "p".repeat(56);
    let mut f = Fixture::load("general");
    f.plugins[0].installation.plugin = longest.parse().unwrap();
    f.plugins[0].version.spec.name = longest.parse().unwrap();
    let rendered = render(&f.workload(), &options(Target::Kubernetes, SidecarMode::Native)).unwrap();
    assert!(rendered.to_yaml().contains(&format!("name: plugin-{longest}\n")));
    assert_eq!(format!("plugin-{longest}").len(), 63);
}
