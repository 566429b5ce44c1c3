//! The `starling` binary: everything lives in the library; this only hands over to `cli`.
//!
//! It also picks the global allocator: mimalloc, because every record's buffers are allocated
//! on a listener thread and freed on the store's writer thread, the pattern glibc's malloc
//! handles worst (`bench/compare.sh` measures the difference; see README's benchmark notes).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    starling::cli::main()
}
