fn main() -> std::process::ExitCode {
    worker_runtime::run(worker_slack::serve)
}
