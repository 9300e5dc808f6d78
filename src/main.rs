use clap::Parser;

fn main() {
    sandbox::error::install_panic_hook();
    let cli = sandbox::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let Err(failed) = runtime.block_on(sandbox::app::run(cli)) else {
        return;
    };
    eprint!("{}", failed.message);
    std::process::exit(failed.code);
}
