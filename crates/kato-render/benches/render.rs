//! Rendering a component with five running plug-ins for kubernetes, to YAML: the hot path of
//! the manifests endpoint. `render_yaml` writes the YAML straight from the model;
//! `render(..).to_yaml()` builds the k8s-openapi objects first (the engines' path). Target: ≥ 25,000 renders/s on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kato_render::{SidecarMode, Target, render, render_yaml};

#[path = "../tests/common/mod.rs"]
mod common;

fn render_to_yaml(c: &mut Criterion) {
    let fixture = common::Fixture::load("several-plugins");
    let workload = fixture.workload();
    let opts = common::options(Target::Kubernetes, SidecarMode::Native);
    let running = workload
        .plugins
        .iter()
        .filter(|p| p.installation.enabled && p.version.image.is_some())
        .count();
    assert_eq!(running, 5, "the benchmark renders five running plug-ins");

    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    group.bench_function("five-plugins-kubernetes-yaml", |b| {
        b.iter(|| render_yaml(black_box(&workload), black_box(&opts)).unwrap())
    });
    group.bench_function("five-plugins-kubernetes-objects-then-yaml", |b| {
        b.iter(|| render(black_box(&workload), black_box(&opts)).unwrap().to_yaml())
    });
    group.bench_function("five-plugins-kubernetes-objects", |b| {
        b.iter(|| render(black_box(&workload), black_box(&opts)).unwrap())
    });
    let rendered = render(&workload, &opts).unwrap();
    group.bench_function("five-plugins-to-yaml-only", |b| {
        b.iter(|| black_box(&rendered).to_yaml())
    });
    group.finish();
}

criterion_group!(benches, render_to_yaml);
criterion_main!(benches);
