#!/usr/bin/env bash
# Build a minimal Asterisk (22.x LTS) for the real-Asterisk test lane of the call-centre examples
# (tests/examples/test_asterisk_real.py), offline.
#
#   scripts/asterisk-build.sh SRC_DIR PREFIX
#
# SRC_DIR: an unpacked Asterisk source tree (a release tag of asterisk/asterisk, e.g. 22.10.1);
#          it is configured and built in place (keep it out of the repository: runs/ or /work/...).
# PREFIX:  where it is installed (e.g. runs/asterisk); the test lane finds it through
#          ASTERISK_PREFIX=PREFIX, or at runs/asterisk / /opt/asterisk.
#
# No network: no bundled pjproject (so no chan_pjsip: Local and AudioSocket channels need no SIP),
# the system jansson (libjansson-dev), no bundled libjwt, no sound packages, no XML docs.
# Only the modules the lane uses are built (list below); everything else is disabled in menuselect.
#
# Environment:
#   JOBS      parallel make jobs (default 2)
#   NICE      niceness of configure and make (default 19: the build yields to anything else)
#   OPTIMIZE  compiler optimisation (default -O1: a test build; Asterisk's own default is -O3)
#   ASTERISK_APT=1  apt-get install the build dependencies first (Debian 12; needs root)
#
# Writes PREFIX/build-info.txt: source version, flags, modules, and the configure/make/install
# wall and CPU times (from bash's `times` of the child processes).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SRC_DIR PREFIX" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd)
mkdir -p "$2"
PREFIX=$(cd "$2" && pwd)
JOBS=${JOBS:-2}
NICE=${NICE:-19}
OPTIMIZE=${OPTIMIZE:--O1}

if [[ ! -x "$SRC/configure" || ! -f "$SRC/main/asterisk.c" ]]; then
    echo "error: $SRC is not an Asterisk source tree (no configure / main/asterisk.c)" >&2
    exit 2
fi

DEBIAN_DEPS=(build-essential pkg-config libedit-dev libjansson-dev libxml2-dev uuid-dev
    libsqlite3-dev libssl-dev libncurses-dev)
if [[ "${ASTERISK_APT:-0}" == 1 ]]; then
    apt-get install -y --no-install-recommends "${DEBIAN_DEPS[@]}"
fi
for header in jansson.h uuid/uuid.h libxml/parser.h sqlite3.h histedit.h; do
    if ! echo "#include <$header>" | cc -E -I/usr/include/libxml2 - >/dev/null 2>&1; then
        echo "error: <$header> not found; on Debian: apt-get install ${DEBIAN_DEPS[*]}" \
            "(or rerun with ASTERISK_APT=1)" >&2
        exit 2
    fi
done

# The modules the lane needs. Core (always built): Local channels (core_local), the dialplan
# builtins (Answer, Hangup, NoOp, Set, Wait...), bridging core, HTTP server, AMI.
MODULES=(
    # AudioSocket: the dialplan application, the channel driver, the shared protocol code
    app_audiosocket chan_audiosocket res_audiosocket
    # dialplan: extensions.conf, the applications and functions the shipped contexts use, and
    # `channel originate` (res_clioriginate) for the CLI
    pbx_config app_playback app_exec app_chanspy app_originate app_dial app_echo app_stasis res_clioriginate
    func_shell func_timeout func_callerid func_channel func_strings func_logic func_cut func_global
    # ARI (externalMedia) over the HTTP server + websocket events
    res_ari res_ari_model res_ari_applications res_ari_asterisk res_ari_bridges res_ari_channels
    res_ari_events res_ari_playbacks res_ari_endpoints res_ari_sounds res_ari_recordings
    res_ari_device_states
    res_stasis res_stasis_answer res_stasis_playback res_stasis_recording res_stasis_snoop
    res_stasis_device_state res_http_websocket res_websocket_client res_sorcery_config res_sorcery_memory
    # bridging (ARI mixing bridges, Dial), media channels ARI bridges use
    bridge_simple bridge_softmix bridge_holding bridge_builtin_features
    bridge_builtin_interval_features chan_bridge_media
    # timing (Playback into channels that have no clock of their own), formats and codecs
    res_timing_timerfd format_wav format_pcm format_sln codec_ulaw codec_alaw codec_a_mu
    codec_resample
)
CATEGORIES=(MENUSELECT_ADDONS MENUSELECT_APPS MENUSELECT_BRIDGES MENUSELECT_CDR MENUSELECT_CEL
    MENUSELECT_CHANNELS MENUSELECT_CODECS MENUSELECT_FORMATS MENUSELECT_FUNCS MENUSELECT_PBX
    MENUSELECT_RES MENUSELECT_TESTS MENUSELECT_UTILS MENUSELECT_AGIS MENUSELECT_CORE_SOUNDS
    MENUSELECT_MOH MENUSELECT_EXTRA_SOUNDS)

INFO="$PREFIX/build-info.txt"
{
    echo "source: $SRC (version $(cat "$SRC/.version" 2>/dev/null || echo unknown))"
    echo "prefix: $PREFIX"
    echo "jobs: $JOBS  nice: $NICE  optimize: $OPTIMIZE"
    echo "host: $(uname -srm), $(nproc) cores; started $(date -u +%FT%TZ)"
    echo "modules: ${MODULES[*]}"
} >"$INFO"

# step NAME CMD...: run CMD at the requested niceness; record its wall and CPU seconds (user +
# system of the waited-for children, from the shell's own `times`, which a subshell would reset).
TIMES=$(mktemp)
trap 'rm -f "$TIMES"' EXIT
cpu_children() {
    times >"$TIMES"
    tail -1 "$TIMES" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/);
        printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }'
}
step() {
    local name=$1 t0 c0 c1
    shift
    echo "== $name: $*" >&2
    t0=$(date +%s)
    cpu_children >"$TIMES.c0"
    nice -n "$NICE" "$@"
    cpu_children >"$TIMES.c1"
    c0=$(cat "$TIMES.c0") c1=$(cat "$TIMES.c1")
    rm -f "$TIMES.c0" "$TIMES.c1"
    awk -v n="$name" -v w="$(($(date +%s) - t0))" -v a="$c0" -v b="$c1" \
        'BEGIN { printf "%s: wall %d s, cpu %.0f s\n", n, w, b - a }' | tee -a "$INFO" >&2
}

cd "$SRC"
step configure ./configure --prefix="$PREFIX" \
    --without-pjproject-bundled --without-pjproject --without-jansson-bundled --with-jansson \
    --without-libjwt-bundled --disable-xmldoc \
    --without-dahdi --without-pri --without-ss7 --without-gsm --without-speex --without-spandsp \
    --without-postgres --without-unixodbc --without-ldap --without-radius --without-sdl --without-x11 \
    --without-gtk2 --without-jack --without-portaudio --without-bluetooth --without-srtp

step menuselect.makeopts make menuselect.makeopts
disable=()
for c in "${CATEGORIES[@]}"; do disable+=(--disable-category "$c"); done
enable=()
for m in "${MODULES[@]}"; do enable+=(--enable "$m"); done
menuselect/menuselect "${disable[@]}" "${enable[@]}" menuselect.makeopts
# every module asked for must be enabled after menuselect (a dependency it lacks disables it)
# (module categories list their DISABLED members: MENUSELECT_APPS=app_a app_b ...)
module_cats=$(IFS='|'; echo "${CATEGORIES[*]}")
missing=()
for m in "${MODULES[@]}"; do
    grep -E "^($module_cats)=(.* )?$m( |\$)" menuselect.makeopts >/dev/null && missing+=("$m")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "error: menuselect left these modules disabled: ${missing[*]}" >&2
    exit 1
fi

step make make -j"$JOBS" OPTIMIZE="$OPTIMIZE" DEBUG=-g0 NOISY_BUILD=
step install make install OPTIMIZE="$OPTIMIZE" DEBUG=-g0

for m in "${MODULES[@]}"; do
    [[ -f "$PREFIX/lib/asterisk/modules/$m.so" ]] || {
        echo "error: $m.so was not installed" >&2
        exit 1
    }
done
echo "finished $(date -u +%FT%TZ); $("$PREFIX/sbin/asterisk" -V)" >>"$INFO"
cat "$INFO"
