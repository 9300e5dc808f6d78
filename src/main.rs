use clap::Parser;

fn main() {
    let cli = sandbox::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let result = runtime.block_on(sandbox::commands::run(cli));
    if let Err(error) = result {
        // A closed stdout (e.g. `sandbox render | head`) is not a failure.
        if error.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprint!("{}", sandbox::error::render(&error));
        let interrupted = error
            .downcast_ref::<sandbox::commands::Interrupted>()
            .is_some();
        // 130: the shell's code for "stopped by Ctrl-C".
        std::process::exit(if interrupted {
            130
        } else {
            sandbox::error::EXIT_FAILURE
        });
    }
}
