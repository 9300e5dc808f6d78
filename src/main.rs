use clap::Parser;

fn main() {
    sandbox::error::install_panic_hook();
    let cli = sandbox::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let code = match runtime.block_on(sandbox::app::run(cli)) {
        Ok(code) => code,
        Err(failed) => {
            eprint!("{}", failed.message);
            failed.code
        }
    };
    // Exit codes: `sandbox::error::EXIT_CODES_HELP`.
    std::process::exit(code);
}
