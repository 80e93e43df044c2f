//! Generates the gRPC code from `proto/` with protox (no `protoc` needed).

fn main() {
    let files = ["proto/switchboard/worker/v1/worker.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = match protox::compile(files, ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("the worker contract does not compile: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure().compile_fds(fds) {
        panic!("generating the worker contract failed: {e}");
    }
}
