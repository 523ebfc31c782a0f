//! Renders the `several-plugins` fixture (kubernetes, native sidecars) N times, for counting
//! instructions per render with callgrind (see BENCHMARKS.md):
//!
//! ```sh
//! cargo build --release -p kato-render --example render_loop
//! valgrind --tool=callgrind target/release/examples/render_loop yaml 200
//! ```
//!
//! Modes: `yaml` (`render_yaml`, the manifests path), `objects-yaml` (`render` then `to_yaml`),
//! `objects` (`render` only).

use std::hint::black_box;

use kato_render::{SidecarMode, Target, render, render_yaml};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "yaml".into());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let fixture = common::Fixture::load("several-plugins");
    let workload = fixture.workload();
    let opts = common::options(Target::Kubernetes, SidecarMode::Native);
    let mut bytes = 0;
    for _ in 0..n {
        bytes += match mode.as_str() {
            "yaml" => render_yaml(black_box(&workload), black_box(&opts)).unwrap().len(),
            "objects-yaml" => render(black_box(&workload), black_box(&opts)).unwrap().to_yaml().len(),
            "objects" => render(black_box(&workload), black_box(&opts)).unwrap().objects.len(),
            other => panic!("unknown mode `{other}`: use yaml, objects-yaml or objects"),
        };
    }
    println!("{n} renders ({mode}), {bytes} bytes or objects in all");
}
