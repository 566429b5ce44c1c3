#!/usr/bin/env bash
# Builds the .deb and the .rpm of Starling in one go:
#
#   packaging/build.sh            # -> target/debian/starling_*.deb, target/generate-rpm/starling-*.rpm
#
# Needs cargo-deb and cargo-generate-rpm (`cargo install cargo-deb cargo-generate-rpm`).
# Man pages and shell completions are generated from the CLI definitions first.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: cargo install $tool" >&2; exit 2; }
done

cargo build --release --locked --bin starling
strip --strip-all -o target/release/starling.stripped target/release/starling

rm -rf target/assets
cargo run --release --locked --quiet --example gen-docs -- target/assets
gzip -9n target/assets/man/*.1

cargo deb --no-build --locked
cargo generate-rpm
ls -1 target/debian/*.deb target/generate-rpm/*.rpm
