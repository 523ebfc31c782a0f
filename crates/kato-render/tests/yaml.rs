//! The YAML writer: every document reads back as the object's JSON, for every fixture and
//! combination, and ambiguous scalars are quoted for YAML 1.1 readers.

mod common;

use common::render;
use common::{COMBINATIONS, Fixture, fixture_names, options};

#[test]
fn yaml_reads_back_as_the_objects() {
    for name in fixture_names() {
        let f = Fixture::load(&name);
        for (mode, target) in COMBINATIONS {
            let r = render(&f.workload(), &options(target, mode)).unwrap();
            let yaml = r.to_yaml();
            let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&yaml)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
            assert_eq!(serde_json::Value::Array(docs), r.to_json(), "{name} {mode} {target}");
        }
    }
}

#[test]
fn yaml_1_1_readers_get_strings_too() {
    // kubectl and PyYAML read YAML 1.1, where plain `yes` is a boolean and `12:30` a base-60
    // number; serde_yaml (YAML 1.2) writes both plain, so its output would be rejected.
    let f = Fixture::load("several-plugins");
    let r = render(
        &f.workload(),
        &options(kato_render::Target::Kubernetes, kato_render::SidecarMode::Native),
    )
    .unwrap();
    let yaml = r.to_yaml();
    assert!(yaml.contains("value: 'yes'\n") && yaml.contains("value: '12:30'\n"));
    let reference = serde_yaml::to_string(r.objects.last().unwrap()).unwrap();
    assert!(
        reference.contains("value: yes\n"),
        "serde_yaml changed: revisit this emitter"
    );
}

#[test]
fn awkward_values_survive() {
    let mut f = Fixture::load("general");
    let awkward = [
        "yes",
        "off",
        "~",
        "",
        " padded ",
        "12:30",
        "0x1F",
        "1e3",
        "- item",
        "a: b",
        "x #y",
        "#c",
        "'q'",
        "\"d\"",
        "line\nbreak",
        "tab\there",
        "it's",
        "€",
        "\u{7f}",
        "{a}",
        "[b]",
        "*ref",
        "&anchor",
        "!tag",
        "|",
        ">",
        "%",
        "@",
        "`",
    ];
    f.component.env = awkward
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(serde_json::json!({"name": format!("V{i}"), "value": v})).unwrap())
        .collect();
    let r = render(
        &f.workload(),
        &options(kato_render::Target::Kubernetes, kato_render::SidecarMode::Native),
    )
    .unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&r.to_yaml())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(serde_json::Value::Array(docs), r.to_json());
}

#[test]
fn awkward_commands_survive() {
    // A shell script that starts with a line break is the usual way to write one in YAML (`|`).
    for script in [
        "\nwhile true; do echo hi; done\n",
        "echo a\necho b",
        " lead",
        "- x",
        "a: b",
    ] {
        let mut f = Fixture::load("general");
        f.component.command = Some(serde_json::from_value(serde_json::json!(script)).unwrap());
        for (mode, target) in COMBINATIONS {
            let r = render(&f.workload(), &options(target, mode)).unwrap();
            let yaml = r.to_yaml();
            let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&yaml)
                .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
                .collect();
            assert_eq!(serde_json::Value::Array(docs), r.to_json(), "{script:?}\n{yaml}");
        }
    }
}
