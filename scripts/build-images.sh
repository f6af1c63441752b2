#!/usr/bin/env bash
# build-images.sh — build faultline's registry-free docker images from the
# host's installed binaries. Nothing is pulled from any registry: each image is
# a root file system assembled from host files (the server binaries, every
# shared library ldd lists, the dynamic loader and a static busybox) and
# turned into an image with `tar | docker import`.
#
#   faultline/redis:7       redis-server (/usr/bin/redis-server)
#   faultline/postgres:15   /usr/lib/postgresql/15 (without the LLVM JIT)
#   faultline/toxiproxy:2   toxiproxy-server built with Go from the module's
#                           github.com/Shopify/toxiproxy/v2/cmd/server (static,
#                           FROM scratch): the in-network proxy of the docker
#                           topologies' peer links
#
# Usage: scripts/build-images.sh [--force] [redis] [postgres] [toxiproxy]
#
# An image is rebuilt only when it is missing, when --force is given, or when
# its inputs changed: the image carries a label dev.faultline.image-hash with
# a hash of the binaries, the package versions and this script.
#
# Host packages needed: redis-server, postgresql-15, busybox-static, docker.
# The images' entrypoints follow the official images' interface, so the
# docker provider drives both the same way:
#   redis:    CMD redis-server <args>
#   postgres: env POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB,
#             POSTGRES_INITDB_ARGS; CMD postgres <args>; PGDATA
#             /var/lib/postgresql/data, initialised on first start.
set -euo pipefail

REDIS_IMAGE=${FAULTLINE_REDIS_IMAGE:-faultline/redis:7}
POSTGRES_IMAGE=${FAULTLINE_POSTGRES_IMAGE:-faultline/postgres:15}
TOXIPROXY_IMAGE=${FAULTLINE_TOXIPROXY_IMAGE:-faultline/toxiproxy:2}
PG_HOME=/usr/lib/postgresql/15
PG_SHARE=/usr/share/postgresql/15
BUSYBOX=/bin/busybox
SELF=$(readlink -f "$0")
PG_ENTRYPOINT=$(dirname "$SELF")/images/postgres-entrypoint.sh

force=0
want=()
for a in "$@"; do
	case "$a" in
	--force | -f) force=1 ;;
	redis | postgres | toxiproxy) want+=("$a") ;;
	-h | --help)
		sed -n '2,25p' "$SELF"
		exit 0
		;;
	*)
		echo "build-images.sh: unknown argument $a (use --force, redis, postgres, toxiproxy)" >&2
		exit 2
		;;
	esac
done
[ ${#want[@]} -eq 0 ] && want=(redis postgres toxiproxy)

die() {
	echo "build-images.sh: $*" >&2
	exit 1
}

# scratch DIR-OR-FILE... — removed when the script exits, however it exits.
# (A function's `trap … RETURN` is not local in bash: a nested function's
# RETURN trap replaces its caller's, and the caller's temp dir was left.)
SCRATCH=()
scratch() { SCRATCH+=("$@"); }
cleanup() { [ ${#SCRATCH[@]} -eq 0 ] || rm -rf "${SCRATCH[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v docker >/dev/null || die "docker CLI not found: install docker.io (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "no docker engine answers (docker info failed): start dockerd"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install -y busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is dynamically linked: apt-get install -y busybox-static"
fi

pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo unknown; }

# inputs_hash FILE... — hash of the given files, the package versions and this script:
# of their contents only, not of where the checkout is (worktrees and clones at
# other paths must find the images up to date, not rebuild and replace them).
inputs_hash() {
	{
		sha256sum "$@" "$SELF" "$BUSYBOX" | cut -d' ' -f1
		pkgver libc6
		pkgver redis-server
		pkgver postgresql-15
	} | sha256sum | cut -c1-16
}

image_hash() {
	docker image inspect -f '{{index .Config.Labels "dev.faultline.image-hash"}}' "$1" 2>/dev/null || true
}

# add_file ROOT PATH — copy PATH (following symlinks) to the same path under ROOT.
add_file() {
	local root=$1 p=$2
	mkdir -p "$root$(dirname "$p")"
	cp -L "$p" "$root$p"
}

# add_libs ROOT FILE... — copy every library ldd lists for FILEs, and the loader.
add_libs() {
	local root=$1
	shift
	local f lib
	for f in "$@"; do
		ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'
	done | sort -u | while read -r lib; do
		[ -e "$root$lib" ] || add_file "$root" "$lib"
	done
}

# add_busybox ROOT — static busybox with a symlink per applet in /bin.
add_busybox() {
	local root=$1 a
	mkdir -p "$root/bin"
	cp "$BUSYBOX" "$root/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
	done
}

# add_etc ROOT NAME — /etc/passwd, /etc/group with root and user NAME (uid 999).
add_etc() {
	local root=$1 name=$2
	mkdir -p "$root/etc"
	printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:999:999:%s:/var/lib/%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		"$name" "$name" "$name" >"$root/etc/passwd"
	printf 'root:x:0:\n%s:x:999:\nnogroup:x:65534:\n' "$name" >"$root/etc/group"
	printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
	mkdir -p "$root/tmp"
	chmod 1777 "$root/tmp"
}

# import ROOT OWNED IMAGE HASH VERSION CHANGES... — tar ROOT (owned by root,
# except the paths in OWNED, owned by 999:999) and docker-import it.
import() {
	local root=$1 owned=$2 image=$3 hash=$4 version=$5
	shift 5
	local tarball
	tarball=$(mktemp --suffix=.tar)
	scratch "$tarball"
	local excl=()
	for p in $owned; do excl+=(--exclude="./${p#/}"); done
	tar -C "$root" --numeric-owner --owner=0 --group=0 "${excl[@]}" -cf "$tarball" .
	for p in $owned; do
		tar -C "$root" --numeric-owner --owner=999 --group=999 -rf "$tarball" "./${p#/}"
	done
	local changes=(
		--change "LABEL dev.faultline.image-hash=$hash"
		--change "LABEL dev.faultline.version=$version"
		--change "LABEL dev.faultline.built-by=scripts/build-images.sh"
	)
	for c in "$@"; do changes+=(--change "$c"); done
	local old
	old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	docker import "${changes[@]}" "$tarball" "$image" >/dev/null
	# The previous build is now untagged: remove it unless a container uses it.
	[ -n "$old" ] && docker image rm "$old" >/dev/null 2>&1 || true
}

build_redis() {
	local bin=/usr/bin/redis-server
	[ -x "$bin" ] || die "$bin not found: apt-get install -y redis-server (or run scripts/deps.sh)"
	local hash
	hash=$(inputs_hash "$bin")
	if [ "$force" = 0 ] && [ "$(image_hash "$REDIS_IMAGE")" = "$hash" ]; then
		echo "$REDIS_IMAGE is up to date ($hash)"
		return
	fi
	local root version
	root=$(mktemp -d /tmp/faultline-image-XXXXXX)
	scratch "$root"
	add_file "$root" "$bin"
	add_libs "$root" "$bin"
	add_busybox "$root"
	add_etc "$root" redis
	mkdir -p "$root/data"
	version=$("$bin" --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
	import "$root" "/data" "$REDIS_IMAGE" "$hash" "$version" \
		'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
		'USER 999:999' \
		'WORKDIR /data' \
		'EXPOSE 6379' \
		'CMD ["redis-server", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no", "--dir", "/data"]'
	echo "built $REDIS_IMAGE (redis $version, hash $hash)"
}

# prebuild_cluster ROOT — initdb (user and database "faultline") into the
# image's PGDATA now, with the host's identical binaries run as nobody (the
# tar makes the files uid 999's), so a container only sets its password on
# first start instead of running initdb (about 1.5 s, much more on a loaded
# machine). Needs root (to switch users); otherwise the entrypoint runs
# initdb at each container's first start.
prebuild_cluster() {
	local root=$1 data=$1/var/lib/postgresql/data
	if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
		echo "note: not root (or no setpriv): the PostgreSQL cluster is initialised at each container's first start"
		return
	fi
	chmod 755 "$root"
	chown -R 65534:65534 "$root/var/lib/postgresql"
	local pwfile=$root/tmp/pw asNobody
	asNobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env -i TZ=UTC LANG=C PATH="$PG_HOME/bin:/usr/bin:/bin")
	# A throwaway password: the entrypoint sets the real one.
	head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pwfile"
	chown 65534:65534 "$pwfile"
	(cd / && "${asNobody[@]}" initdb -D "$data" -U faultline --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 --locale=C --encoding=UTF8 --no-sync >"$root/tmp/initdb.log" 2>&1) ||
		{
			cat "$root/tmp/initdb.log" >&2
			die "initdb of the pre-built cluster failed"
		}
	rm -f "$root/tmp/initdb.log"
	rm -f "$pwfile"
	echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
	local log=$root/tmp/single.log
	echo 'CREATE DATABASE "faultline";' |
		(cd / && "${asNobody[@]}" postgres --single -F -c jit=off -D "$data" postgres >"$log" 2>&1) ||
		{
			cat "$log" >&2
			die "CREATE DATABASE in the pre-built cluster failed"
		}
	rm -f "$log"
	echo "faultline faultline" >"$data/.faultline-template"
	chown 65534:65534 "$data/.faultline-template"
}

build_postgres() {
	[ -x "$PG_HOME/bin/postgres" ] || die "$PG_HOME/bin/postgres not found: apt-get install -y postgresql-15 (or run scripts/deps.sh)"
	local hash
	hash=$(inputs_hash "$PG_HOME/bin/postgres" "$PG_HOME/bin/initdb" "$PG_ENTRYPOINT")
	if [ "$force" = 0 ] && [ "$(image_hash "$POSTGRES_IMAGE")" = "$hash" ]; then
		echo "$POSTGRES_IMAGE is up to date ($hash)"
		return
	fi
	local root version f
	root=$(mktemp -d /tmp/faultline-image-XXXXXX)
	scratch "$root"
	mkdir -p "$root$PG_HOME" "$root$(dirname "$PG_SHARE")"
	# The JIT (llvmjit*.so and its bitcode) pulls in LLVM (~130 MB): left out, jit=off.
	tar -C "$PG_HOME" --exclude='./lib/llvmjit*' --exclude='./lib/bitcode' -cf - ./bin ./lib | tar -C "$root$PG_HOME" -xf -
	cp -rL "$PG_SHARE" "$root$PG_SHARE"
	local elfs=()
	for f in "$root$PG_HOME"/bin/* "$root$PG_HOME"/lib/*.so; do
		elfs+=("${f#"$root"}")
	done
	add_libs "$root" "${elfs[@]}"
	# The server was built with the system tzdata: UTC is all it needs here.
	for f in UTC Etc/UTC GMT Etc/GMT; do
		[ -e "/usr/share/zoneinfo/$f" ] && add_file "$root" "/usr/share/zoneinfo/$f"
	done
	add_busybox "$root"
	add_etc "$root" postgres
	mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/usr/local/bin"
	chmod 700 "$root/var/lib/postgresql/data"
	chmod 2775 "$root/var/run/postgresql"
	cp "$PG_ENTRYPOINT" "$root/usr/local/bin/docker-entrypoint.sh"
	chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
	prebuild_cluster "$root"
	version=$("$PG_HOME/bin/postgres" --version | awk '{print $3}')
	import "$root" "/var/lib/postgresql /var/run/postgresql" "$POSTGRES_IMAGE" "$hash" "$version" \
		"ENV PATH=/usr/local/bin:$PG_HOME/bin:/usr/bin:/bin" \
		'ENV PGDATA=/var/lib/postgresql/data' \
		'ENV TZ=UTC' \
		'USER 999:999' \
		'EXPOSE 5432' \
		'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
		'CMD ["postgres", "-c", "listen_addresses=*", "-c", "jit=off"]'
	echo "built $POSTGRES_IMAGE (postgres $version, hash $hash)"
}

build_toxiproxy() {
	local repo go hash version root
	repo=$(dirname "$(dirname "$SELF")")
	go=${GO:-go}
	command -v "$go" >/dev/null || go=/usr/local/go/bin/go
	command -v "$go" >/dev/null || die "go not found (needed to build $TOXIPROXY_IMAGE): install Go or set GO"
	version=$(cd "$repo" && "$go" list -m -f '{{.Version}}' github.com/Shopify/toxiproxy/v2)
	hash=$({
		echo "$version"
		"$go" version
		sha256sum <"$SELF"
	} | sha256sum | cut -c1-16)
	if [ "$force" = 0 ] && [ "$(image_hash "$TOXIPROXY_IMAGE")" = "$hash" ]; then
		echo "$TOXIPROXY_IMAGE is up to date ($hash)"
		return
	fi
	root=$(mktemp -d /tmp/faultline-image-XXXXXX)
	scratch "$root"
	(cd "$repo" && CGO_ENABLED=0 "$go" build -trimpath -o "$root/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server) ||
		die "go build of toxiproxy-server failed"
	mkdir -p "$root/etc" "$root/tmp"
	chmod 1777 "$root/tmp"
	printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
	import "$root" "" "$TOXIPROXY_IMAGE" "$hash" "${version#v}" \
		'USER 65534:65534' \
		'EXPOSE 8474' \
		'ENTRYPOINT ["/toxiproxy-server"]' \
		'CMD ["-host", "0.0.0.0", "-port", "8474"]'
	echo "built $TOXIPROXY_IMAGE (toxiproxy $version, hash $hash)"
}

for w in "${want[@]}"; do
	"build_$w"
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^(${REDIS_IMAGE}|${POSTGRES_IMAGE}|${TOXIPROXY_IMAGE})\b" || true
