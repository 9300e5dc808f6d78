use clap::Parser;

fn main() {
    sandbox::error::install_panic_hook();
    let cli = sandbox::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let Err(error) = runtime.block_on(sandbox::app::run(cli)) else {
        return;
    };
    // A closed stdout (e.g. `sandbox render | head`) is not a failure.
    if error.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        std::process::exit(0);
    }
    eprint!("{}", sandbox::app::render_error(&error));
    std::process::exit(sandbox::app::exit_code(&error));
}
