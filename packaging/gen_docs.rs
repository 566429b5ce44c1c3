//! Generates the man pages (clap_mangen) and shell completions (clap_complete) that the
//! packages install, from the same clap definitions the binary uses, so they never drift.
//!
//! `cargo run --release --example gen-docs -- OUT_DIR` writes `OUT_DIR/man/starling*.1`
//! and `OUT_DIR/completions/{starling.bash,_starling,starling.fish}`.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    let man_dir = out.join("man");
    let completions_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completions_dir)?;
    let command = starling::cli::Cli::command();
    // starling.1 plus one page per subcommand (starling-run.1, …).
    clap_mangen::generate_to(command.clone(), &man_dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "starling", &completions_dir)?;
    }
    println!(
        "wrote {} and {}",
        man_dir.display(),
        completions_dir.display()
    );
    Ok(())
}
