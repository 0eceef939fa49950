#!/usr/bin/env bash
# Writes a folder that works as a checkout does on a machine with no Rust and no network (a GPU
# node, a rented box, a container with PyTorch): the binary behind a launcher that finds its
# libtorch, the scripts, the experiments, the PyTorch peer, and optionally CIFAR-10 packed small.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<'USAGE'
Usage: scripts/bundle.sh [--out DIR] [--train-batches N] [--level N] [--data-dir DIR]

Writes DIR (default dist/resnext, replaced when it exists): target/release/resnext (a launcher:
the build's libtorch, else python3's torch of the same version, build and C++ ABI, else a
one-line refusal), target/release/resnext.bin (the binary), scripts/, experiments/,
bench/torch_peer.py and a README. Prints the bundle's size.

  --train-batches N  also pack the test batch and the first N training batches (0-5, default 0)
                     xz-compressed into DIR/data/cifar-10-batches-bin, the default data folder
                     there (about 23 MB a batch at level 9)
  --level N          xz preset for the data, 0 (fastest) to 9 (smallest, default)
  --data-dir DIR     the CIFAR-10 to pack (default $CIFAR10_DIR, else data/cifar-10-batches-bin)

Environment: RESNEXT_BIN, the binary to bundle (default target/release/resnext).
USAGE
}

die() {
  echo "bundle: $*" >&2
  exit 2
}

out=dist/resnext
batches=0
level=9
data_dir=${CIFAR10_DIR:-data/cifar-10-batches-bin}
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) out=${2-}; shift 2 || die "--out needs a folder" ;;
    --train-batches) batches=${2-}; shift 2 || die "--train-batches needs a number" ;;
    --level) level=${2-}; shift 2 || die "--level needs a number" ;;
    --data-dir) data_dir=${2-}; shift 2 || die "--data-dir needs a folder" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ $batches =~ ^[0-5]$ ]] || die "--train-batches must be 0 to 5, not '$batches'"
[[ -n $out && $(realpath -m "$out") != "$ROOT" ]] || die "--out must be a folder other than the checkout"
bin=${RESNEXT_BIN:-$ROOT/target/release/resnext}
[[ -x $bin ]] || die "no binary at $bin: run 'make build' first"

# The libtorch the binary loads here is the one it was built against (its rpath): record it.
line=$("$bin" info | sed -n 's/^libtorch: //p')
[[ $line =~ ^([^ ]+)\ loaded\ from\ (.+)\ \(built\ against\ ([^ ]+)\)$ ]] ||
  die "cannot read the libtorch from '$bin info': '$line'"
lib=${BASH_REMATCH[2]}
version=${BASH_REMATCH[3]}
[[ ${BASH_REMATCH[1]} == "$version" ]] || die "$bin runs on libtorch ${BASH_REMATCH[1]}, not the $version it was built against"
abi=$(grep -q -a 'St7__cxx11' "$lib/libc10.so" && echo 1 || echo 0)

rm -rf "$out"
mkdir -p "$out/target/release" "$out/bench"
cp "$bin" "$out/target/release/resnext.bin"
cp "$ROOT/scripts/bundle/resnext" "$out/target/release/resnext"
printf 'version=%s\nabi=%s\nrpath=%s\n' "$version" "$abi" "$lib" >"$out/target/release/resnext.libtorch"
cp -r "$ROOT/experiments" "$out/"
cp -r "$ROOT/scripts" "$out/"
rm -rf "$out/scripts/bundle" "$out/scripts/bundle.sh" # what makes a bundle stays behind
cp "$ROOT/bench/torch_peer.py" "$out/bench/"
cp "$ROOT/scripts/bundle/README.md" "$out/README.md"
git -C "$ROOT" rev-parse --short HEAD >"$out/COMMIT" 2>/dev/null || echo unknown >"$out/COMMIT"
if ((batches)); then
  "$bin" data pack --data-dir "$data_dir" --to "$out/data/cifar-10-batches-bin" \
    --train-batches "$(seq -s, 1 "$batches")" --level "$level" >/dev/null
fi
mib() { du -sb "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; }
data_size=$([[ -d $out/data ]] && echo ", data $(mib "$out/data")" || echo ", no data")
echo "bundle: $out is $(mib "$out") (binary $(mib "$out/target/release/resnext.bin")$data_size), built against torch $version (C++ ABI $abi)"
