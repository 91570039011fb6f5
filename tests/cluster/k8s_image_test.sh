#!/bin/bash
# deploy/Dockerfile against deploy/'s manifests (issue 19 item 5 f), offline: the image is
# not built here (no container daemon in CI), so this checks what can be checked without
# building it.
#   - every container of the manifests runs the image the Dockerfile's documented build
#     command tags (apruntime:dev);
#   - every binary a container's command names (/opt/apruntime/bin/X) is installed there by
#     the Dockerfile (built by Bazel as //PKG:X and installed as /stage/bin/X, copied to
#     /opt/apruntime/bin), and its Bazel target is one the Dockerfile builds;
#   - those targets exist: each is a cc_binary of its package's BUILD file.
set -u
fail() { echo "FAIL: $*"; exit 1; }
D=deploy/Dockerfile
[[ -f $D ]] || fail "no $D"
grep -q -- "-t apruntime:dev" "$D" || fail "$D does not document 'docker build ... -t apruntime:dev'"
images=$(grep -ho 'image: *[^ ]*' deploy/*.yaml | awk '{print $2}' | sort -u)
[[ $images == "apruntime:dev" ]] || fail "manifests use images '$images', not apruntime:dev"
grep -q "^COPY --from=build /stage/bin /opt/apruntime/bin$" "$D" || fail "bin not copied"
built=$(sed -n '/bazel build/,/&&/p' "$D")
installed=$(sed -n '/for b in/,/done/p' "$D")
bins=$(grep -ho '/opt/apruntime/bin/[a-z_]*' deploy/*.yaml | sort -u)
[[ -n $bins ]] || fail "no /opt/apruntime/bin commands in deploy/"
for path in $bins; do
  name=${path##*/}
  pkg=$(grep -o "//[a-z]*:$name\b" <<<"$built" | head -1)
  [[ -n $pkg ]] || fail "$path: the Dockerfile builds no //PKG:$name"
  dir=${pkg#//}; dir=${dir%%:*}
  grep -qw "$dir/$name" <<<"$installed" || fail "$path: $dir/$name is not installed"
  grep -A2 "^cc_binary(" "$dir/BUILD" | grep -q "name = \"$name\"" ||
    fail "$pkg is not a cc_binary in $dir/BUILD"
  echo "ok: $path <- $pkg"
done
echo PASS
