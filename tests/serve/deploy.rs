//! What the container image and the Helm chart promise, checked without Docker or a cluster.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::root;
use common::server::{model, model_at, TestServer};
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn chart_lints_renders_validates_and_refuses_bad_values() {
    let helm = root().join(".tools/helm");
    assert!(
        helm.exists(),
        "run ./scripts/setup.sh: it installs helm into .tools/"
    );
    let out = Command::new("python")
        .arg(root().join("tests/helm/check_chart.py"))
        .arg(&helm)
        .arg(env!("CARGO_BIN_EXE_crossrank"))
        .arg(root().join("helm/crossrank"))
        .output()
        .unwrap();
    println!("{}", ok(&out));
}

/// The chart's default image is the one scripts/image.sh builds, and the GPU example's the
/// CUDA one.
#[test]
fn chart_default_image_is_what_image_sh_builds() {
    let name = |flavor: &str| {
        let out = Command::new(root().join("scripts/image.sh"))
            .args(["--print-name", "--flavor", flavor])
            .env_remove("CROSSRANK_IMAGE_REPOSITORY")
            .output()
            .unwrap();
        ok(&out).trim().to_owned()
    };
    let render = |values: &[&str]| {
        let mut cmd = Command::new(root().join(".tools/helm"));
        cmd.args(["template", "rr"])
            .arg(root().join("helm/crossrank"));
        for v in values {
            cmd.arg("-f").arg(root().join(v));
        }
        ok(&cmd.output().unwrap())
    };
    let cpu = name("cpu");
    let default = render(&[]);
    assert!(
        default.contains(&format!("image: {cpu}\n")),
        "{cpu} not in\n{default}"
    );
    let cuda = name("cuda");
    let gpu = render(&["helm/crossrank/ci/gpu-two-models.yaml"]);
    assert!(gpu.contains(&format!("image: {cuda}\n")), "{gpu}");
}

/// Libraries the runtime image's base (debian bookworm-slim) provides, as bundle-libs.sh says.
fn system_library(path: &str) -> bool {
    let name = Path::new(path).file_name().unwrap().to_string_lossy();
    let system = [
        "ld-linux",
        "libc.",
        "libm.",
        "libdl.",
        "libpthread.",
        "librt.",
        "libutil.",
        "libgcc_s.",
        "libstdc++.",
        "libz.",
    ];
    (path.starts_with("/lib") || path.starts_with("/usr/lib"))
        && system.iter().any(|s| name.starts_with(s))
}

/// Every library `file` needs resolves into `bundle` or the base system, with the bundle on
/// LD_LIBRARY_PATH as in the image.
fn assert_resolves(file: &Path, bundle: &Path) {
    let out = Command::new("ldd")
        .arg(file)
        .env("LD_LIBRARY_PATH", bundle)
        .output()
        .unwrap();
    let text = ok(&out);
    for line in text.lines() {
        assert!(!line.contains("not found"), "{}: {line}", file.display());
        if let Some((_, target)) = line.split_once("=> ") {
            let path = target.split(' ').next().unwrap_or_default();
            assert!(
                path.starts_with(bundle.to_str().unwrap()) || system_library(path),
                "{} loads {path}, which the image would not have",
                file.display()
            );
        }
    }
}

/// The venv's site-packages, where the torch wheel is.
fn site_packages() -> PathBuf {
    let out = Command::new(root().join(".venv/bin/python"))
        .args(["-c", "import site; print(site.getsitepackages()[0])"])
        .output()
        .unwrap();
    PathBuf::from(ok(&out).trim())
}

/// docker/bundle-libs.sh with --link (symbolic links: the same names without the gigabytes).
fn bundle(flavor: &str) -> (tempfile::TempDir, Vec<String>) {
    let out = tempfile::tempdir().unwrap();
    let site = site_packages();
    let run = Command::new("bash")
        .arg(root().join("docker/bundle-libs.sh"))
        .args([
            "--link",
            "--flavor",
            flavor,
            env!("CARGO_BIN_EXE_crossrank"),
        ])
        .arg(out.path())
        .arg(&site)
        .output()
        .unwrap();
    ok(&run);
    let names = std::fs::read_dir(out.path().join("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (out, names)
}

/// Every library the packaged binary loads resolves into the bundle or the base system, and
/// the CPU bundle leaves a CUDA wheel's libtorch_cuda and nvidia-* libraries out.
#[test]
fn image_bundle_holds_every_library_the_binary_loads() {
    let (out, names) = bundle("cpu");
    for want in ["libtorch_cpu.so", "libc10.so"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    for absent in [
        "libtorch.so",
        "libtorch_cuda.so",
        "libcublas",
        "libcudnn",
        "libnccl",
    ] {
        assert!(
            !names.iter().any(|n| n.starts_with(absent)),
            "the CPU bundle holds {absent}: {names:?}"
        );
    }
    let lib = out.path().join("lib");
    assert_resolves(&out.path().join("crossrank"), &lib);
    for name in &names {
        assert_resolves(&lib.join(name), &lib);
    }
    // Without the build machine's rpath, the packaged binary finds libtorch only in the bundle.
    let rpath = Command::new("patchelf")
        .arg("--print-rpath")
        .arg(out.path().join("crossrank"))
        .output()
        .unwrap();
    assert_eq!(ok(&rpath).trim(), "");
    // It runs from the bundle alone.
    let version = Command::new(out.path().join("crossrank"))
        .arg("--version")
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    assert!(ok(&version).starts_with("crossrank "));
}

/// With a CUDA wheel (what PyPI gives), the CUDA bundle has libtorch_cuda and every library
/// of the nvidia-* packages (some are opened with dlopen, which ldd cannot see).
#[test]
fn cuda_bundle_adds_the_cuda_backend() {
    let site = site_packages().join("nvidia");
    if !site.is_dir() {
        eprintln!("skipped: the torch wheel in .venv is not a CUDA build");
        return;
    }
    let (out, names) = bundle("cuda");
    for want in [
        "libtorch.so",
        "libtorch_cuda.so",
        "libcublas.so",
        "libcudnn.so",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} not in {names:?}"
        );
    }
    assert_resolves(&out.path().join("crossrank"), &out.path().join("lib"));
}

#[test]
fn dockerfile_runs_serve_as_non_root_and_copies_what_it_builds_from() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for want in [
        "torch==2.13.0",
        "docker/bundle-libs.sh",
        "COPY --from=build /out/lib /opt/crossrank/lib",
        "ARG BUILDER_IMAGE=rust:1.95-bookworm",
        "ARG RUNTIME_IMAGE=debian:bookworm-slim",
        "FROM ${RUNTIME_IMAGE} AS base",
        "TORCH_INDEX_URL",
        "USER 10001:10001",
        "EXPOSE 50051 9464",
        r#"ENTRYPOINT ["/usr/local/bin/crossrank", "serve"]"#,
        // the user has no home: models by Hugging Face id need a writable cache
        "HF_HOME=/var/cache/crossrank/huggingface",
        "chown -R 10001:10001 /var/cache/crossrank",
    ] {
        assert!(dockerfile.contains(want), "Dockerfile lacks {want:?}");
    }
    // The first stage is the shared base (the legacy builder builds every stage up to the
    // target: `--target base` must build nothing else), the last the default target, built
    // from source; neither, nor the prebuilt packaging, brings Python.
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert!(stages[0].starts_with("${RUNTIME_IMAGE} AS base\n"));
    assert!(stages.last().unwrap().starts_with("base AS runtime\n"));
    let prebuilt = std::fs::read_to_string(root().join("docker/prebuilt.Dockerfile")).unwrap();
    for stage in [stages[0], stages.last().unwrap(), prebuilt.as_str()] {
        assert!(
            !stage.to_lowercase().contains("python"),
            "the runtime image must not need Python"
        );
    }
    for want in ["FROM ${BASE_IMAGE}", "COPY lib /opt/crossrank/lib"] {
        assert!(
            prebuilt.contains(want),
            "prebuilt.Dockerfile lacks {want:?}"
        );
    }
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignored
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for copied in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "proto",
        "src",
        "docker",
    ] {
        assert!(
            !ignored.contains(&copied),
            ".dockerignore drops {copied}, which the build copies"
        );
    }
}

fn health(server: &TestServer, service: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args(["health", "--timeout-secs", "20", "--service", service])
        .arg(format!("--addr=http://{}", server.addr))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_command_reports_readiness_and_liveness() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let (ready, live, unknown) = tokio::task::spawn_blocking(move || {
        let r = (
            health(&server, ""),
            health(&server, "crossrank.liveness"),
            health(&server, "nope"),
        );
        drop(server);
        r
    })
    .await
    .unwrap();
    assert!(ok(&ready).contains("SERVING"));
    ok(&live);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_holds_while_readiness_fails() {
    let missing = tempfile::tempdir().unwrap();
    let models = vec![model("bert=bert"), model_at("broken", missing.path())];
    let server =
        TestServer::start_unready(models, ServerOptions::default(), RequestLimits::default()).await;
    server.wait_serving("bert").await;
    let (ready, live) = tokio::task::spawn_blocking(move || {
        let r = (health(&server, ""), health(&server, "crossrank.liveness"));
        drop(server);
        r
    })
    .await
    .unwrap();
    assert!(
        !ready.status.success(),
        "a failed model must keep the pod unready"
    );
    ok(&live);
}
