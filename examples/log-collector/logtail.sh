#!/bin/sh
# logtail: Kato's example log collector, a busybox shell script (see README.md here).
#
# - tails LOGTAIL_FILES (default /var/log/nginx/*.log), which the app writes to a volume it
#   shares with its plug-ins, from the start of each file, following new lines (`tail -F`);
# - tags each line with the env tags ALIYUN_LOG_ENV_TAGS names (`_pod_name_|_pod_ip_|…`): each
#   names an env variable; an unset one is derived where it can be (pod name from HOSTNAME, pod
#   IP from the container's address, namespace from KATO_TEAM) and left out where it cannot:
#       [_pod_name_=demo-web _pod_ip_=10.89.0.5 _namespace_=demo] <line>
# - ships the lines to the sink its discovery document sets (the `sink` group: SINK `stdout`,
#   the default, or `http` with SINK_URL, to which it POSTs them in batches), long-polling
#   $KATO_DISCOVERY_URL in the background: a changed sink applies at once, without a restart,
#   and each revision is acked (applied, or rejected with the reason).
#
# Its own messages go to stderr, prefixed `logtail:`. HTTP is HTTP/1.0 through busybox `nc`
# (plain http only), JSON is read with sed.

files=${LOGTAIL_FILES:-/var/log/nginx/*.log}
tag_names=${ALIYUN_LOG_ENV_TAGS-_pod_name_|_pod_ip_|_namespace_|_node_name_|_node_ip_}
run=/tmp/logtail
mkdir -p "$run"
rm -f "$run"/*
echo stdout > "$run/sink"

log() { echo "logtail: $*" >&2; }

# http NAME HOST PORT SECONDS: sends the request in $run/NAME.req to HOST:PORT and leaves the
# answer in $run/NAME.resp (nc's errors in NAME.err). nc's input (a FIFO) stays open until the
# answer is in, for at most SECONDS: a server may drop a request whose client stopped sending
# before it answered.
http() {
  [ -p "$run/$1.in" ] || mkfifo "$run/$1.in"
  : > "$run/$1.resp"
  nc -w 5 "$2" "$3" < "$run/$1.in" > "$run/$1.resp" 2> "$run/$1.err" &
  _np=$!
  { cat "$run/$1.req"; exec sleep "$4"; } > "$run/$1.in" &
  _sp=$!
  wait $_np
  kill $_sp 2>/dev/null
  wait $_sp 2>/dev/null
}

# The status code of $run/NAME.resp, or nothing.
status_of() {
  _code=
  read -r _proto _code _rest < "$run/$1.resp" 2>/dev/null
  echo "$_code"
}

# split_url URL: sets hostport, host, port and path of an http:// URL.
split_url() {
  _u=${1#http://}
  hostport=${_u%%/*}
  case $_u in */*) path=/${_u#*/} ;; *) path=/ ;; esac
  host=${hostport%:*}
  port=${hostport##*:}
  [ "$port" != "$hostport" ] || port=80
}

# --- tags ---

pod_ip() {
  _ip=$(ip -4 -o addr show scope global 2>/dev/null | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n 1)
  [ -n "$_ip" ] || _ip=$(hostname -i 2>/dev/null | cut -d ' ' -f 1)
  echo "$_ip"
}

tags=
_ifs=$IFS
IFS='|'
for name in $tag_names; do
  IFS=$_ifs
  case $name in
    '' ) continue ;;
    *[!A-Za-z0-9_]* | [0-9]*)
      log "ALIYUN_LOG_ENV_TAGS: \`$name\` is not an env variable name: left out"
      continue
      ;;
  esac
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    case $name in
      _pod_name_) value=${HOSTNAME:-} ;;
      _pod_ip_) value=$(pod_ip) ;;
      _namespace_) value=${KATO_TEAM:-} ;;
    esac
  fi
  [ -z "$value" ] || tags="$tags${tags:+ }$name=$value"
done
IFS=$_ifs
prefix=
[ -z "$tags" ] || prefix="[$tags] "

# --- the discovery watcher (a background process) ---

# ack REVISION STATUS [MESSAGE]
ack() {
  _body="{\"revision\":$1,\"pod\":\"${HOSTNAME:-}\",\"status\":\"$2\""
  [ -z "${3:-}" ] || _body="$_body,\"message\":\"$(printf '%s' "$3" | sed 's/[\\"]/\\&/g')\""
  _body="$_body}"
  printf 'POST %s/ack HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$dpath" "$dhostport" "${KATO_DISCOVERY_TOKEN:-}" "$(printf '%s' "$_body" | wc -c)" "$_body" > "$run/ack.req"
  http ack "$dhost" "$dport" 15
  case $(status_of ack) in
    2??) ;;
    *) log "ack of revision $1 failed: $(head -n 1 "$run/ack.resp")$(cat "$run/ack.err")" ;;
  esac
}

# The string value of JSON key $1 in $2 (the first match), or nothing.
json_str() {
  printf '%s' "$2" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# Applies the document in $run/doc: the sink of the first port's values.
apply_doc() {
  doc=$(cat "$run/doc")
  rev=${doc#\{\"revision\":}
  rev=${rev%%[!0-9]*}
  if [ -z "$rev" ]; then
    log "discovery answered a document without a revision: $doc"
    rev=$1
    return
  fi
  ports=${doc#*\"ports\":\[}
  first=${ports%%\}\}*}
  sink=$(json_str SINK "$first")
  url=$(json_str SINK_URL "$first")
  case $sink in
    stdout | '') want=stdout ;;
    http)
      case $url in
        http://?*) want="http $url" ;;
        https://*) ack "$rev" rejected "SINK_URL \`$url\`: this collector speaks plain http only"; return ;;
        *) ack "$rev" rejected "SINK_URL \`$url\` is not an http:// URL"; return ;;
      esac
      ;;
    *) ack "$rev" rejected "SINK \`$sink\` is unknown: use stdout or http"; return ;;
  esac
  if [ "$want" != "$current" ]; then
    echo "$want" > "$run/sink.new" && mv "$run/sink.new" "$run/sink"
    log "sink now $want (was $current; discovery revision $rev)"
    current=$want
  elif [ "$1" = 0 ]; then
    log "sink $want (discovery revision $rev)"
  fi
  ack "$rev" applied
}

watch_discovery() {
  trap 'exit 0' TERM
  case ${KATO_DISCOVERY_URL:-} in
    http://*) ;;
    '') log "no KATO_DISCOVERY_URL: shipping to stdout"; exit 0 ;;
    *) log "KATO_DISCOVERY_URL \`$KATO_DISCOVERY_URL\`: this collector speaks plain http only; shipping to stdout"; exit 0 ;;
  esac
  split_url "$KATO_DISCOVERY_URL"
  dhost=$host dport=$port dpath=$path dhostport=$hostport
  rev=0
  current=stdout
  backoff=1
  away=
  while :; do
    printf 'GET %s?revision=%s&wait=30 HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n' \
      "$dpath" "$rev" "$dhostport" "${KATO_DISCOVERY_TOKEN:-}" > "$run/watch.req"
    http watch "$dhost" "$dport" 45
    code=$(status_of watch)
    case $code in
      200 | 304)
        [ -z "$away" ] || log "discovery reachable again"
        away=
        backoff=1
        ;;
    esac
    case $code in
      200)
        sed '1,/^\r*$/d' "$run/watch.resp" > "$run/doc"
        apply_doc "$rev"
        ;;
      304) ;;
      401 | 403 | 404)
        log "discovery answered $code ($(head -n 1 "$run/watch.resp")): is the token current? trying again in 30s"
        sleep 30 &
        wait $!
        ;;
      *)
        [ -n "$away" ] || log "discovery unreachable (${code:-no answer}$(cat "$run/watch.err")): keeping sink ${current%% *}, retrying"
        away=1
        sleep "$backoff" &
        wait $!
        [ "$backoff" -ge 16 ] || backoff=$((backoff * 2))
        ;;
    esac
  done
}

# --- shipping ---

batch=$run/batch
: > "$batch"
n=0

# Ships the batch to the current sink; fails when the sink did not take it.
flush() {
  read -r sink url < "$run/sink"
  if [ "$sink" = http ]; then
    split_url "$url"
    {
      printf 'POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n' \
        "$path" "$hostport" "$(wc -c < "$batch")"
      cat "$batch"
    } > "$run/post.req"
    http post "$host" "$port" 15
    case $(status_of post) in
      2??) ;;
      *)
        why="$(head -n 1 "$run/post.resp")$(cat "$run/post.err")"
        return 1
        ;;
    esac
  else
    cat "$batch"
  fi
  : > "$batch"
  n=0
}

# Flushes, retrying every second while the sink refuses: meanwhile `tail` waits on the pipe,
# so the lines wait in the app's files rather than in memory.
ship() {
  failing=
  until flush; do
    [ -n "$failing" ] || log "shipping $n lines to $url failed (${why:-no answer}): retrying every second"
    failing=1
    sleep 1 &
    wait $!
  done
  [ -z "$failing" ] || log "shipping to $sink again"
}

# --- main ---

trap 'exit 0' TERM INT
log "tags: ${tags:-none}"
set -f
patterns=$files
set +f
waited=
while :; do
  # shellcheck disable=SC2086 # the patterns are globs
  set -- $patterns
  found=
  for f in "$@"; do [ -e "$f" ] && found=1; done
  [ -z "$found" ] || break
  [ -n "$waited" ] || log "waiting for $patterns"
  waited=1
  sleep 1 &
  wait $!
done
log "tailing $*"

# `tail` follows a tick file too: a line of one \001 byte there, written a second after an http
# batch began, makes the loop below ship a batch that no further line completes. One writer
# (tail) on the pipe keeps the app's lines whole.
tick=$(printf '\001')
: > "$run/tick"
mkfifo "$run/lines"
tail -q -F -n +1 "$@" "$run/tick" > "$run/lines" &
tailpid=$!
watch_discovery &
watcher=$!
trap 'kill $tailpid $watcher 2>/dev/null; exit 0' TERM INT

ticking=
while IFS= read -r line; do
  if [ "$line" = "$tick" ]; then
    ticking=
    [ "$n" -eq 0 ] || ship
    continue
  fi
  read -r sink _ < "$run/sink"
  if [ "$sink" != http ] && [ "$n" -eq 0 ]; then
    printf '%s%s\n' "$prefix" "$line"
    continue
  fi
  printf '%s%s\n' "$prefix" "$line" >> "$batch"
  n=$((n + 1))
  # http: batches of up to a second's lines (at most 500); anything else at once.
  if [ "$sink" != http ] || [ "$n" -ge 500 ]; then
    ship
  elif [ -z "$ticking" ]; then
    ticking=1
    { sleep 1; echo "$tick" >> "$run/tick"; } &
  fi
done < "$run/lines"
log "tail ended"
kill "$watcher" 2>/dev/null
exit 1
