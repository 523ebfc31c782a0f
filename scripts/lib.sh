# Shared helpers for the project's scripts (sourced, not run).

# What `kato serve` needs on its default podman target and for Dockerfile builds, named one by
# one: apt installs podman's pause binary (catatonit), its netavark network stack with DNS
# (aardvark-dns) and the iptables netavark calls only as recommendations or not at all, and
# the scripts install with --no-install-recommends. `kato doctor` checks the same list.
KATO_PACKAGES=(ca-certificates git podman conmon runc catatonit netavark aardvark-dns iptables uidmap buildah docker-registry)

# What `scripts/defaults` needs to stage the default plug-ins' repo offline: git, Debian's static
# busybox for the log collector's image, ldd (libc-bin) to find the libraries kato-mesh and kato-perf
# load and strip (binutils) to drop their debug info.
DEFAULTS_PACKAGES=(git busybox-static libc-bin binutils)

# Installs Debian packages that are missing; a no-op when all are present.
need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Installs Python command-line tools that are missing.
need_pip() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "installing: $pkg (pip)" >&2
  python3 -m pip install --quiet "$pkg" || python3 -m pip install --quiet --break-system-packages "$pkg"
  hash -r
}

# Node.js and npm for the console's browser test (playwright-core and axe-core from the npm
# registry): the machine's own when it has one, else Debian's.
need_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
  need_packages nodejs npm
}
